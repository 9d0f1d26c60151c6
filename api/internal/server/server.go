// Package server is Takt's HTTP API: OEE and the facts behind it, per equipment,
// line and site, under /api/v1, described by /api/v1/openapi.json.
//
// Contract: every /api/v1 request needs a bearer token; the token decides the
// tenant. Each request runs in one transaction as the role takt_app with the tenant
// set locally (set_config(..., true)), so row-level security applies and a
// cross-tenant request finds nothing (404). Reads go to a read replica when any is
// configured, and to the primary when the replica cannot be reached. Errors are JSON
// {"error": {"code", "message"}}; a bad parameter gets 400 naming it. Times are
// RFC 3339 in and out.
package server

import (
	"context"
	"crypto/sha256"
	_ "embed"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"strconv"
	"sync"
	"sync/atomic"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"
	"github.com/jackc/pgx/v5/pgxpool"
	"github.com/prometheus/client_golang/prometheus"

	"takt.dev/servicekit/pii"
)

//go:embed openapi.json
var openapi []byte

//go:embed dashboard.html
var dashboard []byte

//go:embed dashboard.js
var dashboardJS []byte

// Deps are what the server needs.
type Deps struct {
	Primary  *pgxpool.Pool   // as the tables' owner; requests switch to takt_app
	Replicas []*pgxpool.Pool // read-only copies; may be empty
	Log      *slog.Logger
	Registry *prometheus.Registry
	Now      func() time.Time
	// TokenCache is how long a looked-up token is trusted without asking the
	// database again: a revocation takes effect within it. Default 10 s.
	TokenCache time.Duration
	// RequestTimeout bounds a request's time (its database calls end with it).
	// Default 30 s.
	RequestTimeout time.Duration
	// PII seals and opens personal data (required).
	PII *pii.Keyring
	// TokenRate and AddressRate bound the requests per second of one token and of
	// one client address (bursts of twice as many); past them a request is a 429
	// with Retry-After. 0 takes the default (50 and 200), a negative value none.
	TokenRate, AddressRate float64
	// AnswerCacheBytes bounds the cache of OEE answers kept until the data behind
	// them changes (answers.go); 0 or less: no cache. It serves only while
	// ListenForChanges runs, and never with Replicas.
	AnswerCacheBytes int64
}

// Server serves the API.
type Server struct {
	d       Deps
	next    atomic.Uint64 // round robin over replicas
	tokens  sync.Map      // sha256 → cachedToken
	guard   *authThrottle // failed token lookups per client address
	perTok  *authThrottle // requests per token; nil: unlimited
	perAddr *authThrottle // requests per client address; nil: unlimited
	bogus   sync.Map      // sha256 → time.Time: tokens the database did not know, until then
	nBogus  atomic.Int64
	m       *metrics
	handler http.Handler
	// answers is the cache of OEE answers; nil when off. listenerPID is the
	// backend of the connection that listens for changes (for tests).
	answers     *answerCache
	listenerPID atomic.Uint32
}

type cachedToken struct {
	tenant, name string
	scope        Scope
	until        time.Time
}

// Scope is what a token may do; each scope includes the ones before it.
type Scope int

const (
	ScopeRead   Scope = iota + 1 // GET: OEE, timelines, master data, dead letters
	ScopeManage                  // also change master data and facts (POST, PATCH, DELETE)
	ScopeAdmin                   // also list and revoke the tenant's tokens
)

var scopeNames = [...]string{ScopeRead: "read", ScopeManage: "manage", ScopeAdmin: "admin"}

func (sc Scope) String() string {
	if sc > 0 && int(sc) < len(scopeNames) {
		return scopeNames[sc]
	}
	return fmt.Sprintf("Scope(%d)", int(sc))
}

// ParseScope reads read, manage or admin.
func ParseScope(s string) (Scope, error) {
	for i, n := range scopeNames {
		if n != "" && n == s {
			return Scope(i), nil
		}
	}
	return 0, fmt.Errorf("scope %q: want read, manage or admin", s)
}

// New builds the server.
func New(d Deps) *Server {
	if d.PII == nil {
		panic("server.New: Deps.PII is required (personal data is never stored in clear)")
	}
	if d.Now == nil {
		d.Now = time.Now
	}
	if d.Registry == nil {
		d.Registry = prometheus.NewRegistry()
	}
	if d.TokenCache <= 0 {
		d.TokenCache = 10 * time.Second
	}
	if d.RequestTimeout <= 0 {
		d.RequestTimeout = 30 * time.Second
	}
	if d.TokenRate == 0 {
		d.TokenRate = 50
	}
	if d.AddressRate == 0 {
		d.AddressRate = 200
	}
	s := &Server{d: d, m: newMetrics(d.Registry), guard: newAuthThrottle(1, 20)}
	if d.TokenRate > 0 {
		s.perTok = newAuthThrottle(d.TokenRate, max(1, int(2*d.TokenRate)))
	}
	if d.AddressRate > 0 {
		s.perAddr = newAuthThrottle(d.AddressRate, max(1, int(2*d.AddressRate)))
	}
	if d.AnswerCacheBytes > 0 && len(d.Replicas) == 0 {
		s.answers = newAnswerCache(d.AnswerCacheBytes, d.Registry)
	}
	s.handler = s.routes()
	return s
}

func (s *Server) ServeHTTP(w http.ResponseWriter, r *http.Request) { s.handler.ServeHTTP(w, r) }

// apiError is an error with an HTTP status and a machine-readable code.
type apiError struct {
	status  int
	code    string
	message string
}

func (e *apiError) Error() string { return e.message }

func badParam(name, format string, args ...any) error {
	return &apiError{http.StatusBadRequest, "bad_parameter", name + ": " + fmt.Sprintf(format, args...)}
}

func notFound(what string) error {
	return &apiError{http.StatusNotFound, "not_found", what + " not found"}
}

func writeJSON(w http.ResponseWriter, status int, v any) {
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(status)
	_ = json.NewEncoder(w).Encode(v)
}

// writeBody answers JSON already encoded.
func writeBody(w http.ResponseWriter, status int, body []byte) {
	w.Header().Set("Content-Type", "application/json")
	w.Header().Set("Content-Length", strconv.Itoa(len(body)))
	w.WriteHeader(status)
	_, _ = w.Write(body)
}

func (s *Server) fail(w http.ResponseWriter, r *http.Request, err error) {
	var ae *apiError
	if !errors.As(err, &ae) {
		s.d.Log.Error("request failed", "path", r.URL.Path, "err", err)
		ae = &apiError{http.StatusInternalServerError, "internal", "internal error"}
		var pg *pgconn.PgError
		if errors.As(err, &pg) && pg.Code == "57014" {
			ae = &apiError{http.StatusServiceUnavailable, "timeout", "the query took too long"}
		}
	}
	writeJSON(w, ae.status, map[string]any{"error": map[string]string{"code": ae.code, "message": ae.message}})
}

type ctxKey int

const principalKey ctxKey = 0

// principal is who a request is from.
type principal struct {
	tenant, actor string
	scope         Scope
}

// auth resolves the bearer token to a tenant, or answers 401.
func (s *Server) auth(next http.HandlerFunc) http.HandlerFunc {
	return s.authScope(0, next)
}

// authScope is auth for a call that needs scope need; 0 means by the method: read
// for GET and HEAD, manage for the others. A token whose scope is too small gets 403.
func (s *Server) authScope(need Scope, next http.HandlerFunc) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		const prefix = "Bearer "
		h := r.Header.Get("Authorization")
		if len(h) <= len(prefix) || h[:len(prefix)] != prefix {
			w.Header().Set("WWW-Authenticate", `Bearer realm="takt"`)
			s.fail(w, r, &apiError{http.StatusUnauthorized, "unauthorized", "a bearer token is required"})
			return
		}
		client, now := clientOf(r), s.d.Now()
		if s.perAddr != nil {
			if ok, wait := s.perAddr.take(client, now); !ok {
				s.limited(w, r, "address", wait)
				return
			}
		}
		if blocked, wait := s.guard.blocked(client, now); blocked {
			s.m.authThrottled.Inc()
			w.Header().Set("Retry-After", retryAfter(wait))
			s.fail(w, r, &apiError{http.StatusTooManyRequests, "too_many_failures",
				"too many unknown tokens from this address; retry after " + retryAfter(wait) + " s"})
			return
		}
		sum := sha256.Sum256([]byte(h[len(prefix):]))
		p, err := s.lookup(r.Context(), sum)
		if err != nil {
			var ae *apiError
			if errors.As(err, &ae) && ae.status == http.StatusUnauthorized {
				s.guard.failed(client, now)
				s.m.authFailures.Inc()
			}
			s.fail(w, r, err)
			return
		}
		if s.perTok != nil {
			if ok, wait := s.perTok.take(string(sum[:]), now); !ok {
				s.limited(w, r, "token", wait)
				return
			}
		}
		want := need
		if want == 0 {
			want = ScopeManage
			if r.Method == http.MethodGet || r.Method == http.MethodHead {
				want = ScopeRead
			}
		}
		if p.scope < want {
			s.fail(w, r, &apiError{http.StatusForbidden, "forbidden",
				fmt.Sprintf("this token's scope is %s; %s %s needs %s", p.scope, r.Method, r.URL.Path, want)})
			return
		}
		next(w, r.WithContext(context.WithValue(r.Context(), principalKey, p)))
	}
}

// limited answers 429 for a request past its rate limit (by token or address).
func (s *Server) limited(w http.ResponseWriter, r *http.Request, by string, wait time.Duration) {
	s.m.rateLimited.WithLabelValues(by).Inc()
	w.Header().Set("Retry-After", retryAfter(wait))
	s.fail(w, r, &apiError{http.StatusTooManyRequests, "rate_limited",
		"too many requests from this " + by + "; retry after " + retryAfter(wait) + " s"})
}

// maxBogus bounds the negative cache of unknown tokens; when full it is emptied.
const maxBogus = 100_000

var errUnknownToken = &apiError{http.StatusUnauthorized, "unauthorized", "unknown, revoked or expired token"}

// lookup finds the token whose SHA-256 is sum.
func (s *Server) lookup(ctx context.Context, sum [sha256.Size]byte) (principal, error) {
	now := s.d.Now()
	if c, ok := s.tokens.Load(sum); ok && c.(cachedToken).until.After(now) {
		ct := c.(cachedToken)
		return principal{ct.tenant, "token:" + ct.name, ct.scope}, nil
	}
	// A token the database did not know within TokenCache costs no query again
	// (a token is random: one made since was never presented before).
	if until, ok := s.bogus.Load(sum); ok && until.(time.Time).After(now) {
		s.m.bogusHits.Inc()
		return principal{}, errUnknownToken
	}
	var tenant, name, scope string
	var expires *time.Time
	err := s.d.Primary.QueryRow(ctx, `SELECT tenant_id, name, scope, expires_at FROM api_token
		WHERE token_hash = $1 AND revoked_at IS NULL AND (expires_at IS NULL OR expires_at > $2)`, sum[:], now).Scan(&tenant, &name, &scope, &expires)
	if errors.Is(err, pgx.ErrNoRows) {
		s.tokens.Delete(sum)
		if s.nBogus.Add(1) > maxBogus {
			s.bogus.Clear()
			s.nBogus.Store(1)
		}
		s.bogus.Store(sum, now.Add(s.d.TokenCache))
		return principal{}, errUnknownToken
	}
	if err != nil {
		return principal{}, err
	}
	sc, err := ParseScope(scope)
	if err != nil {
		return principal{}, err
	}
	// Cached briefly: a revocation takes effect within TokenCache; an expiry on time.
	until := now.Add(s.d.TokenCache)
	if expires != nil && expires.Before(until) {
		until = *expires
	}
	s.tokens.Store(sum, cachedToken{tenant, name, sc, until})
	return principal{tenant, "token:" + name, sc}, nil
}

// tenantSQL makes the rest of its transaction run as takt_app (row-level security)
// with the request's tenant ($1) and a statement timeout.
const tenantSQL = `SELECT set_config('role', 'takt_app', true), set_config('app.tenant', $1, true),
	set_config('statement_timeout', '5s', true)`

// inTenant runs fn in a transaction as takt_app with the request's tenant set
// locally. Reads may go to a replica, falling back to the primary when it fails to
// connect.
func (s *Server) inTenant(ctx context.Context, write bool, fn func(pgx.Tx) error) error {
	p := ctx.Value(principalKey).(principal)
	err := s.onPool(write, func(pool *pgxpool.Pool) error {
		return pgx.BeginTxFunc(ctx, pool, pgx.TxOptions{}, func(tx pgx.Tx) error {
			if _, err := tx.Exec(ctx, tenantSQL, p.tenant); err != nil {
				return err
			}
			return fn(tx)
		})
	})
	if write {
		// What this server changed shows in its next answer, not only once
		// PostgreSQL's announcement of it arrives (other servers: within that).
		s.answers.changed(p.tenant)
	}
	return err
}

// readInTenant runs the queries queue puts on a batch (reading their results in
// their callbacks) as inTenant does, in one round trip instead of one per
// statement plus BEGIN and COMMIT: pgx sends a batch as one pipeline ending in one
// Sync, which PostgreSQL runs as one implicit transaction, so the tenant set by its
// first statement holds for the others and ends with them. queue is called again if
// a replica fails and the primary is asked.
func (s *Server) readInTenant(ctx context.Context, queue func(*pgx.Batch)) error {
	p := ctx.Value(principalKey).(principal)
	return s.onPool(false, func(pool *pgxpool.Pool) error {
		b := &pgx.Batch{}
		b.Queue(tenantSQL, p.tenant)
		queue(b)
		return pool.SendBatch(ctx, b).Close()
	})
}

// onPool runs run on the primary (writes, or no replicas) or on the next replica,
// falling back to the primary when the replica fails to connect.
func (s *Server) onPool(write bool, run func(*pgxpool.Pool) error) error {
	if write || len(s.d.Replicas) == 0 {
		return run(s.d.Primary)
	}
	replica := s.d.Replicas[s.next.Add(1)%uint64(len(s.d.Replicas))]
	err := run(replica)
	var ae *apiError
	if err != nil && !errors.As(err, &ae) && isConnError(err) {
		s.m.fallbacks.Inc()
		s.d.Log.Warn("read replica failed; reading from the primary", "err", err)
		return run(s.d.Primary)
	}
	return err
}

// isConnError reports whether err means the server could not be used at all (as
// opposed to a query it refused).
func isConnError(err error) bool {
	var pg *pgconn.PgError
	if errors.As(err, &pg) {
		return pg.Code[:2] == "08" || pg.Code == "57P01" || pg.Code == "57P03" // connection exception, admin shutdown, cannot connect now
	}
	var ce *pgconn.ConnectError
	if errors.As(err, &ce) || pgconn.SafeToRetry(err) {
		return true
	}
	var ne net.Error
	return errors.As(err, &ne)
}
