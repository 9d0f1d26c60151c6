// Command takt-api serves Takt's HTTP API (see internal/server) and manages its
// bearer tokens.
//
//	takt-api [-c FILE] serve
//	takt-api [-c FILE] token create -tenant acme -name dashboard [-scope read|manage|admin] [-expires 8760h]
//	takt-api [-c FILE] token list|revoke -tenant acme [-id ID]
//	takt-api [-c FILE] tenant create -id acme -name "Acme" | tenant list
//	takt-api [-c FILE] pii status | pii rotate [-batch 500]
//	takt-api pii keygen [-id k1] [-index]
//	takt-api [-c FILE] validate
//
// Configuration: a YAML file (see example.yaml) and the environment: DATABASE_URL,
// TAKT_READ_REPLICA_URLS (comma-separated) and TAKT_HTTP_ADDR override the file.
// The keys that seal personal data come from TAKT_PII_KEYS or TAKT_PII_KEYS_FILE
// only (servicekit/pii), never from the file.
package main

import (
	"context"
	"crypto/rand"
	"crypto/sha256"
	"crypto/tls"
	"encoding/base64"
	"errors"
	"flag"
	"fmt"
	"io"
	"net"
	"os"
	"os/signal"
	"strconv"
	"strings"
	"syscall"
	"text/tabwriter"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"

	"takt.dev/api/internal/server"
	"takt.dev/schemas"
	"takt.dev/servicekit"
	"takt.dev/servicekit/buildinfo"
	"takt.dev/servicekit/pii"
	"takt.dev/servicekit/poolstats"
	"takt.dev/servicekit/tracepgx"
	"takt.dev/servicekit/tracing"
)

func main() {
	if err := run(context.Background(), os.Args[1:], os.Getenv, os.Stdout, os.Stderr); err != nil {
		fmt.Fprintln(os.Stderr, "takt-api:", err)
		os.Exit(1)
	}
}

// Config is takt-api's configuration file.
type Config struct {
	HTTPAddr        string   `yaml:"http_addr"`
	DatabaseURL     string   `yaml:"database_url"`
	ReadReplicaURLs []string `yaml:"read_replica_urls"`
	// TokenCache is how long a server trusts a token it looked up: a revocation
	// takes effect on other servers within it. Default 10s.
	TokenCache time.Duration `yaml:"token_cache"`
	// TLSCertFile and TLSKeyFile, both or neither: serve HTTPS only (TLS 1.2 and
	// up), with Strict-Transport-Security on every answer.
	TLSCertFile string `yaml:"tls_cert_file"`
	TLSKeyFile  string `yaml:"tls_key_file"`
	// RateLimit bounds requests per second of one token and of one client address
	// (bursts of twice as many); past it, 429 with Retry-After. Default 50 and 200;
	// -1: no limit.
	RateLimit struct {
		Token   float64 `yaml:"token"`
		Address float64 `yaml:"address"`
	} `yaml:"rate_limit"`
	// AnswerCache keeps OEE answers until PostgreSQL announces that the data behind
	// them changed; MaxBytes bounds it (0: 64 MiB; -1: no cache). Off when
	// read_replica_urls are set (a replica may lag what was announced).
	AnswerCache struct {
		MaxBytes int64 `yaml:"max_bytes"`
	} `yaml:"answer_cache"`
}

func load(file string, getenv func(string) string) (*Config, error) {
	cfg := &Config{HTTPAddr: "127.0.0.1:8080"}
	if err := servicekit.LoadYAML(file, cfg); err != nil {
		return nil, err
	}
	for name, dst := range map[string]*string{"DATABASE_URL": &cfg.DatabaseURL} {
		v, err := servicekit.Env(getenv, name)
		if err != nil {
			return nil, err
		}
		if v != "" {
			*dst = v
		}
	}
	if v, err := servicekit.Env(getenv, "TAKT_READ_REPLICA_URLS"); err != nil {
		return nil, err
	} else if v != "" {
		cfg.ReadReplicaURLs = strings.Split(v, ",")
	}
	if v := getenv("TAKT_HTTP_ADDR"); v != "" {
		cfg.HTTPAddr = v
	}
	if cfg.DatabaseURL == "" {
		return nil, errors.New("database_url: missing (or set DATABASE_URL)")
	}
	if (cfg.TLSCertFile == "") != (cfg.TLSKeyFile == "") {
		return nil, errors.New("tls_cert_file and tls_key_file: give both (HTTPS) or neither (plain HTTP)")
	}
	if cfg.TLSCertFile != "" {
		if _, err := tls.LoadX509KeyPair(cfg.TLSCertFile, cfg.TLSKeyFile); err != nil {
			return nil, fmt.Errorf("tls_cert_file, tls_key_file: %w", err)
		}
	}
	for name, v := range map[string]float64{"rate_limit.token": cfg.RateLimit.Token, "rate_limit.address": cfg.RateLimit.Address} {
		if v < 0 && v != -1 || v > 1e6 {
			return nil, fmt.Errorf("%s %v: want requests per second, up to 1000000, or -1 for no limit", name, v)
		}
	}
	switch mb := cfg.AnswerCache.MaxBytes; {
	case mb == 0:
		cfg.AnswerCache.MaxBytes = server.DefaultAnswerCacheBytes
	case mb == -1:
	case mb < 1<<20 || mb > 64<<30:
		return nil, fmt.Errorf("answer_cache.max_bytes %d: want 1048576 (1 MiB) to 68719476736 (64 GiB), 0 for the default (64 MiB) or -1 for no cache", mb)
	}
	if cfg.TokenCache < 0 || cfg.TokenCache > time.Hour {
		return nil, fmt.Errorf("token_cache %s: want 0 (the default, 10s) to 1h", cfg.TokenCache)
	}
	for i, u := range append([]string{cfg.DatabaseURL}, cfg.ReadReplicaURLs...) {
		if _, err := pgxpool.ParseConfig(u); err != nil {
			name := "database_url"
			if i > 0 {
				name = fmt.Sprintf("read_replica_urls[%d]", i-1)
			}
			return nil, fmt.Errorf("%s: %w", name, err)
		}
	}
	return cfg, nil
}

// NewToken returns a new random token and the SHA-256 hash the database keeps.
func NewToken() (token string, hash []byte) {
	b := make([]byte, 32)
	rand.Read(b)
	token = "takt_" + base64.RawURLEncoding.EncodeToString(b)
	sum := sha256.Sum256([]byte(token))
	return token, sum[:]
}

func run(ctx context.Context, args []string, getenv func(string) string, stdout, stderr io.Writer) error {
	ctx, stop := signal.NotifyContext(ctx, os.Interrupt, syscall.SIGTERM)
	defer stop()
	if len(args) > 0 && (args[0] == "--version" || args[0] == "-version" || args[0] == "version") {
		fmt.Fprintln(stdout, servicekit.VersionLine("takt-api"))
		return nil
	}
	fs := flag.NewFlagSet("takt-api", flag.ContinueOnError)
	fs.SetOutput(stderr)
	file := fs.String("c", "", "configuration file (YAML)")
	if err := fs.Parse(args); err != nil {
		return err
	}
	cmd := fs.Arg(0)
	if cmd == "" {
		cmd = "serve"
	}
	if cmd == "pii" && fs.Arg(1) == "keygen" {
		return keygenCmd(fs.Args()[2:], stdout, stderr)
	}
	cfg, err := load(*file, getenv)
	if err != nil {
		return err
	}
	keys, err := pii.Load(ctx, pii.FromEnv(getenv))
	if err != nil {
		return err
	}
	switch cmd {
	case "validate":
		fmt.Fprintln(stdout, "configuration is valid")
		return nil
	case "token":
		return tokenCmd(ctx, cfg, keys, fs.Args()[1:], getenv, stdout, stderr)
	case "tenant":
		return tenantCmd(ctx, cfg, keys, fs.Args()[1:], getenv, stdout, stderr)
	case "pii":
		return piiCmd(ctx, cfg, keys, fs.Args()[1:], stdout, stderr)
	case "serve":
	default:
		return fmt.Errorf("unknown command %q (want serve, token create|list|revoke, tenant create|list, pii status|rotate|keygen or validate)", cmd)
	}
	log, err := servicekit.Logger(getenv, stderr)
	if err != nil {
		return err
	}
	stopTracing, err := tracing.Setup(ctx, getenv, "takt-api", servicekit.Release)
	if err != nil {
		return err
	}
	defer stopTracing()
	primary, err := tracepgx.NewPool(ctx, cfg.DatabaseURL)
	if err != nil {
		return fmt.Errorf("database_url: %w", err)
	}
	defer primary.Close()
	var replicas []*pgxpool.Pool
	for _, u := range cfg.ReadReplicaURLs {
		p, err := tracepgx.NewPool(ctx, u)
		if err != nil {
			return err
		}
		defer p.Close()
		replicas = append(replicas, p)
	}
	reg := prometheus.NewRegistry()
	pools := map[string]*pgxpool.Pool{"primary": primary}
	for i, p := range replicas {
		pools[fmt.Sprintf("replica-%d", i)] = p
	}
	reg.MustRegister(collectors.NewGoCollector(), collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}), buildinfo.Collector("takt-api"),
		poolstats.New(pools))
	h := server.New(server.Deps{Primary: primary, Replicas: replicas, Log: log, Registry: reg, TokenCache: cfg.TokenCache, PII: keys,
		TokenRate: cfg.RateLimit.Token, AddressRate: cfg.RateLimit.Address, AnswerCacheBytes: cfg.AnswerCache.MaxBytes})
	if cfg.AnswerCache.MaxBytes > 0 && len(replicas) > 0 {
		log.Info("answer cache off: reads go to read replicas, which may lag the changes the primary announces")
	}
	go h.ListenForChanges(ctx)
	ln, err := net.Listen("tcp", cfg.HTTPAddr)
	if err != nil {
		return fmt.Errorf("http_addr: %w", err)
	}
	scheme := "http"
	if cfg.TLSCertFile != "" {
		cert, err := tls.LoadX509KeyPair(cfg.TLSCertFile, cfg.TLSKeyFile)
		if err != nil {
			return fmt.Errorf("tls_cert_file, tls_key_file: %w", err)
		}
		ln = tls.NewListener(ln, &tls.Config{Certificates: []tls.Certificate{cert}, MinVersion: tls.VersionTLS12, NextProtos: []string{"http/1.1"}})
		scheme = "https"
	}
	log.Info("takt-api listening", "addr", ln.Addr().String(), "scheme", scheme)
	return servicekit.Serve(ctx, ln, h)
}

// cliActor names who runs a command in the audit log: cli:<user>.
func cliActor(getenv func(string) string) string {
	for _, k := range []string{"SUDO_USER", "USER", "LOGNAME"} {
		if v := getenv(k); v != "" {
			return "cli:" + v
		}
	}
	return "cli"
}

const tokenUsage = `usage: takt-api token create -tenant T -name N [-scope read|manage|admin] [-expires 8760h|0]
       takt-api token list -tenant T
       takt-api token revoke -tenant T -id ID`

func tokenCmd(ctx context.Context, cfg *Config, keys *pii.Keyring, args []string, getenv func(string) string, stdout, stderr io.Writer) error {
	if len(args) == 0 {
		return errors.New(tokenUsage)
	}
	verb := args[0]
	fs := flag.NewFlagSet("takt-api token "+verb, flag.ContinueOnError)
	fs.SetOutput(stderr)
	tenant := fs.String("tenant", "", "the tenant the token gives access to")
	name := fs.String("name", "", "create: what the token is for (shown in the audit log as token:NAME)")
	scopeName := fs.String("scope", "read", "create: read (GET only), manage (also changes) or admin (also tokens)")
	expires := fs.Duration("expires", 365*24*time.Hour, "create: the token expires after this long; 0 for never")
	id := fs.Int64("id", 0, "revoke: the token's id (token list shows it)")
	if err := fs.Parse(args[1:]); err != nil {
		return err
	}
	if *tenant == "" {
		return fmt.Errorf("token %s: -tenant is required", verb)
	}
	pool, err := pgxpool.New(ctx, cfg.DatabaseURL)
	if err != nil {
		return err
	}
	defer pool.Close()
	var exists bool
	if err := pool.QueryRow(ctx, `SELECT EXISTS (SELECT 1 FROM tenant WHERE tenant_id = $1)`, *tenant).Scan(&exists); err != nil {
		return err
	}
	if !exists {
		return fmt.Errorf("token %s: tenant %q does not exist (takt-api tenant list)", verb, *tenant)
	}
	actor := cliActor(getenv)
	switch verb {
	case "create":
		if *name == "" {
			return errors.New("token create: -name is required")
		}
		scope, err := server.ParseScope(*scopeName)
		if err != nil {
			return fmt.Errorf("token create: -%v", err)
		}
		if *expires < 0 {
			return fmt.Errorf("token create: -expires %s: want a positive duration, or 0 for never", *expires)
		}
		var until *time.Time
		if *expires > 0 {
			t := time.Now().Add(*expires).UTC()
			until = &t
		}
		token, hash := NewToken()
		err = pgx.BeginTxFunc(ctx, pool, pgx.TxOptions{}, func(tx pgx.Tx) error {
			var tok server.Token
			err := tx.QueryRow(ctx, `INSERT INTO api_token (tenant_id, name, token_hash, scope, expires_at, created_by) VALUES ($1, $2, $3, $4, $5, $6)
				RETURNING id, name, scope, created_at, created_by, expires_at, revoked_at`, *tenant, *name, hash, scope.String(), until,
				keys.Seal(pii.Place(server.CreatedByColumn, *tenant), actor)).
				Scan(&tok.ID, &tok.Name, &tok.Scope, &tok.CreatedAt, &tok.CreatedBy, &tok.ExpiresAt, &tok.RevokedAt)
			if err != nil {
				return err
			}
			return audit(ctx, tx, keys, *tenant, actor, "insert", "api_token", strconv.FormatInt(tok.ID, 10), tok)
		})
		if err != nil {
			return err
		}
		expiry := "never expires"
		if until != nil {
			expiry = "expires " + until.Format(time.RFC3339)
		}
		fmt.Fprintf(stderr, "token %q of tenant %s, scope %s, %s (shown once; only its hash is kept):\n", *name, *tenant, scope, expiry)
		fmt.Fprintln(stdout, token)
		return nil
	case "list":
		rows, err := pool.Query(ctx, `SELECT id, name, scope, created_at, created_by, expires_at, revoked_at FROM api_token
			WHERE tenant_id = $1 ORDER BY id`, *tenant)
		if err != nil {
			return err
		}
		toks, err := pgx.CollectRows(rows, pgx.RowToStructByPos[server.Token])
		if err != nil {
			return err
		}
		tw := tabwriter.NewWriter(stdout, 0, 4, 2, ' ', 0)
		fmt.Fprintln(tw, "ID\tNAME\tSCOPE\tCREATED\tBY\tEXPIRES\tSTATE")
		for _, t := range toks {
			by, err := keys.Open(pii.Place(server.CreatedByColumn, *tenant), t.CreatedBy)
			if err != nil {
				return fmt.Errorf("token list: who created token %d: %w", t.ID, err)
			}
			exp, state := "never", "active"
			if t.ExpiresAt != nil {
				exp = t.ExpiresAt.UTC().Format(time.RFC3339)
				if t.ExpiresAt.Before(time.Now()) {
					state = "expired"
				}
			}
			if t.RevokedAt != nil {
				state = "revoked " + t.RevokedAt.UTC().Format(time.RFC3339)
			}
			fmt.Fprintf(tw, "%d\t%s\t%s\t%s\t%s\t%s\t%s\n", t.ID, t.Name, t.Scope, t.CreatedAt.UTC().Format(time.RFC3339), by, exp, state)
		}
		return tw.Flush()
	case "revoke":
		if *id <= 0 {
			return errors.New("token revoke: -id is required (token list shows it)")
		}
		return pgx.BeginTxFunc(ctx, pool, pgx.TxOptions{}, func(tx pgx.Tx) error {
			var tok server.Token
			err := tx.QueryRow(ctx, `UPDATE api_token SET revoked_at = coalesce(revoked_at, now()) WHERE tenant_id = $1 AND id = $2
				RETURNING id, name, scope, created_at, created_by, expires_at, revoked_at`, *tenant, *id).
				Scan(&tok.ID, &tok.Name, &tok.Scope, &tok.CreatedAt, &tok.CreatedBy, &tok.ExpiresAt, &tok.RevokedAt)
			if errors.Is(err, pgx.ErrNoRows) {
				return fmt.Errorf("token revoke: no token %d in tenant %s", *id, *tenant)
			}
			if err != nil {
				return err
			}
			fmt.Fprintf(stdout, "revoked token %d (%s) of tenant %s; servers stop taking it within their token_cache (10 s by default)\n", tok.ID, tok.Name, *tenant)
			return audit(ctx, tx, keys, *tenant, actor, "update", "api_token", strconv.FormatInt(tok.ID, 10), tok)
		})
	}
	return errors.New(tokenUsage)
}

const tenantUsage = `usage: takt-api tenant create -id ID -name NAME
       takt-api tenant list`

// tenantCmd creates and lists tenants, as the tables' owner (no role of the API can).
func tenantCmd(ctx context.Context, cfg *Config, keys *pii.Keyring, args []string, getenv func(string) string, stdout, stderr io.Writer) error {
	if len(args) == 0 || (args[0] != "create" && args[0] != "list") {
		return errors.New(tenantUsage)
	}
	fs := flag.NewFlagSet("takt-api tenant "+args[0], flag.ContinueOnError)
	fs.SetOutput(stderr)
	id := fs.String("id", "", "create: the tenant's id (A-Z a-z 0-9 - _ ., as in MQTT topics)")
	name := fs.String("name", "", "create: its display name")
	if err := fs.Parse(args[1:]); err != nil {
		return err
	}
	pool, err := pgxpool.New(ctx, cfg.DatabaseURL)
	if err != nil {
		return err
	}
	defer pool.Close()
	if args[0] == "list" {
		rows, err := pool.Query(ctx, `SELECT t.tenant_id, t.name, (SELECT count(*) FROM api_token k WHERE k.tenant_id = t.tenant_id AND k.revoked_at IS NULL)
			FROM tenant t ORDER BY t.tenant_id`)
		if err != nil {
			return err
		}
		defer rows.Close()
		tw := tabwriter.NewWriter(stdout, 0, 4, 2, ' ', 0)
		fmt.Fprintln(tw, "ID\tNAME\tACTIVE TOKENS")
		for rows.Next() {
			var tid, tname string
			var n int
			if err := rows.Scan(&tid, &tname, &n); err != nil {
				return err
			}
			fmt.Fprintf(tw, "%s\t%s\t%d\n", tid, tname, n)
		}
		if err := rows.Err(); err != nil {
			return err
		}
		return tw.Flush()
	}
	if err := schemas.CheckName(*id); err != nil {
		return fmt.Errorf("tenant create: -id %q: %v", *id, err)
	}
	if strings.TrimSpace(*name) == "" {
		return errors.New("tenant create: -name is required")
	}
	return pgx.BeginTxFunc(ctx, pool, pgx.TxOptions{}, func(tx pgx.Tx) error {
		tag, err := tx.Exec(ctx, `INSERT INTO tenant (tenant_id, name) VALUES ($1, $2) ON CONFLICT DO NOTHING`, *id, *name)
		if err != nil {
			return err
		}
		if tag.RowsAffected() == 0 {
			return fmt.Errorf("tenant create: tenant %q exists already", *id)
		}
		fmt.Fprintf(stdout, "created tenant %s (%s)\n", *id, *name)
		return audit(ctx, tx, keys, *id, cliActor(getenv), "insert", "tenant", *id, map[string]string{"tenant_id": *id, "name": *name})
	})
}

// audit writes a row of the audit log, its actor sealed.
func audit(ctx context.Context, tx pgx.Tx, keys *pii.Keyring, tenant, actor, action, entity, id string, after any) error {
	_, err := tx.Exec(ctx, `INSERT INTO audit_log (tenant_id, actor, action, entity, entity_id, after) VALUES ($1, $2, $3, $4, $5, $6)`,
		tenant, keys.Seal(pii.Place(server.ActorColumn, tenant), actor), action, entity, id, after)
	return err
}
