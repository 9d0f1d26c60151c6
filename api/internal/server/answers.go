package server

import (
	"container/list"
	"context"
	"fmt"
	"strings"
	"sync"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"
	"github.com/jackc/pgx/v5/pgconn/ctxwatch"
	"github.com/prometheus/client_golang/prometheus"
)

// The answer cache keeps the JSON of OEE answers until the data behind them
// changes. PostgreSQL announces every change to the windows and the plant hierarchy
// on a channel when its transaction commits (migration 00023: a tenant and the UTC
// day its windows start on, a tenant, or everything); a server listens on one
// connection of its own and drops what a change touches.
//
// It is correct without timing assumptions: an answer is kept only if no change of
// its tenant was announced between the moment its request took a ticket (before its
// snapshot) and the moment it is stored, and a change announced after that drops it.
// While the server is not listening (at start, after a lost connection) nothing is
// kept or served, and every answer kept before is dropped. It is off behind read
// replicas: a replica may still show what the primary announced as changed.

// answersChannel is the channel of migration 00023.
const answersChannel = "takt_oee_changed"

// DefaultAnswerCacheBytes is the bound takt-api gives the cache by default: an
// answer of a day's 24 hourly buckets is about 16 KB, so this holds the days of a
// month of 100 equipment (BenchmarkAPI: at 32 MiB an eighth of them missed).
const DefaultAnswerCacheBytes = 64 << 20

type answerKey struct {
	tenant, scope, code, site, bucket string
	from, to                          time.Time // UTC
}

type answer struct {
	key  answerKey
	body []byte
}

// size is what an answer counts against the bound: its body and a fixed overhead.
func (a *answer) size() int64 { return int64(len(a.body)) + 256 }

type answerCache struct {
	max int64

	mu       sync.Mutex
	live     bool
	epoch    uint64            // moved when listening starts or stops
	gen      map[string]uint64 // per tenant, moved by each of its changes
	lru      *list.List        // of *answer, most recently used first
	byTenant map[string]map[answerKey]*list.Element
	bytes    int64

	requests  *prometheus.CounterVec
	evictions *prometheus.CounterVec
	sizeBytes prometheus.Gauge
	entries   prometheus.Gauge
	liveGauge prometheus.Gauge
	changes   prometheus.Counter
}

func newAnswerCache(maxBytes int64, reg prometheus.Registerer) *answerCache {
	c := &answerCache{max: maxBytes, gen: map[string]uint64{}, lru: list.New(), byTenant: map[string]map[answerKey]*list.Element{},
		requests: prometheus.NewCounterVec(prometheus.CounterOpts{Name: "takt_api_answer_cache_requests_total",
			Help: "OEE requests by how the answer cache served them: hit, miss, or off (not listening for changes, or behind read replicas)."}, []string{"result"}),
		evictions: prometheus.NewCounterVec(prometheus.CounterOpts{Name: "takt_api_answer_cache_evictions_total",
			Help: "Answers dropped from the cache: full (its byte bound was reached) or changed (the data behind them changed)."}, []string{"reason"}),
		sizeBytes: prometheus.NewGauge(prometheus.GaugeOpts{Name: "takt_api_answer_cache_bytes", Help: "Bytes the answer cache holds (bounded by answer_cache.max_bytes)."}),
		entries:   prometheus.NewGauge(prometheus.GaugeOpts{Name: "takt_api_answer_cache_entries", Help: "Answers the cache holds."}),
		liveGauge: prometheus.NewGauge(prometheus.GaugeOpts{Name: "takt_api_answer_cache_live",
			Help: "1 while the server listens for changes and so serves answers from its cache, 0 otherwise."}),
		changes: prometheus.NewCounter(prometheus.CounterOpts{Name: "takt_api_answer_cache_changes_total", Help: "Changes announced by PostgreSQL."}),
	}
	for _, r := range []string{"hit", "miss", "off"} {
		c.requests.WithLabelValues(r)
	}
	for _, r := range []string{"full", "changed"} {
		c.evictions.WithLabelValues(r)
	}
	reg.MustRegister(c.requests, c.evictions, c.sizeBytes, c.entries, c.liveGauge, c.changes)
	return c
}

// ticket is what a request holds from before its snapshot to storing its answer.
type ticket struct {
	ok         bool
	epoch, gen uint64
}

// lookup returns the answer kept for k, or a ticket with which to store the answer
// the request is about to compute. A nil cache (off) keeps nothing.
func (c *answerCache) lookup(k answerKey) ([]byte, ticket) {
	if c == nil {
		return nil, ticket{}
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	if !c.live {
		c.requests.WithLabelValues("off").Inc()
		return nil, ticket{}
	}
	if e, ok := c.byTenant[k.tenant][k]; ok {
		c.lru.MoveToFront(e)
		c.requests.WithLabelValues("hit").Inc()
		return e.Value.(*answer).body, ticket{}
	}
	c.requests.WithLabelValues("miss").Inc()
	return nil, ticket{ok: true, epoch: c.epoch, gen: c.gen[k.tenant]}
}

// store keeps body as k's answer unless a change of k's tenant (or of listening)
// came after t was taken, and says whether it did; the least recently used answers
// make room for it.
func (c *answerCache) store(k answerKey, t ticket, body []byte) bool {
	a := &answer{key: k, body: body}
	if c == nil || !t.ok || a.size() > c.max/4 {
		return false // an answer this large would push out too many others
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	if !c.live || c.epoch != t.epoch || c.gen[k.tenant] != t.gen {
		return false
	}
	if old, ok := c.byTenant[k.tenant][k]; ok {
		c.remove(old)
	}
	for c.bytes+a.size() > c.max && c.lru.Len() > 0 {
		c.remove(c.lru.Back())
		c.evictions.WithLabelValues("full").Inc()
	}
	m := c.byTenant[k.tenant]
	if m == nil {
		m = map[answerKey]*list.Element{}
		c.byTenant[k.tenant] = m
	}
	m[k] = c.lru.PushFront(a)
	c.bytes += a.size()
	c.gauges()
	return true
}

func (c *answerCache) remove(e *list.Element) {
	a := c.lru.Remove(e).(*answer)
	m := c.byTenant[a.key.tenant]
	delete(m, a.key)
	if len(m) == 0 {
		delete(c.byTenant, a.key.tenant)
	}
	c.bytes -= a.size()
}

func (c *answerCache) gauges() {
	c.sizeBytes.Set(float64(c.bytes))
	c.entries.Set(float64(c.lru.Len()))
}

// changed applies one announcement (the payloads of migration 00023).
func (c *answerCache) changed(payload string) {
	if c == nil {
		return
	}
	c.changes.Inc()
	if payload == "*" {
		c.mu.Lock()
		defer c.mu.Unlock()
		c.dropAll()
		return
	}
	tenant, day, dated := strings.Cut(payload, " ")
	var from, to time.Time // zero: the tenant's every answer
	if dated {
		if d, err := time.Parse(time.DateOnly, day); err == nil {
			from, to = d, d.AddDate(0, 0, 1)
		}
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	c.gen[tenant]++
	for k, e := range c.byTenant[tenant] {
		// An answer holds the windows starting in [k.from, k.to).
		if from.IsZero() || k.from.Before(to) && k.to.After(from) {
			c.remove(e)
			c.evictions.WithLabelValues("changed").Inc()
		}
	}
	c.gauges()
}

// reset drops every answer and sets whether the server listens.
func (c *answerCache) reset(live bool) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.dropAll()
	c.live = live
	if live {
		c.liveGauge.Set(1)
	} else {
		c.liveGauge.Set(0)
	}
}

// dropAll drops every answer and refuses every ticket taken before (c.mu held).
func (c *answerCache) dropAll() {
	c.epoch++
	if n := c.lru.Len(); n > 0 {
		c.evictions.WithLabelValues("changed").Add(float64(n))
	}
	c.lru.Init()
	c.byTenant = map[string]map[answerKey]*list.Element{}
	c.gen = map[string]uint64{}
	c.bytes = 0
	c.gauges()
}

// ListenForChanges keeps a connection of its own listening on answersChannel and
// applies what it hears until ctx ends; the answer cache serves only while it
// listens. It returns at once when the cache is off (Deps.AnswerCacheBytes).
func (s *Server) ListenForChanges(ctx context.Context) {
	c := s.answers
	if c == nil {
		return
	}
	defer c.reset(false)
	const firstWait = 100 * time.Millisecond
	wait := firstWait
	for ctx.Err() == nil {
		began := time.Now()
		err := s.listenOnce(ctx)
		c.reset(false)
		if time.Since(began) > time.Minute {
			wait = firstWait // it listened for a while: this is a new failure
		}
		if ctx.Err() != nil {
			return
		}
		s.d.Log.Warn("answer cache: not listening for changes; answering from the database until it listens again", "err", err, "retry_in", wait)
		select {
		case <-ctx.Done():
			return
		case <-time.After(wait):
		}
		wait = min(2*wait, 10*time.Second)
	}
}

// listenerCheck is how long the listening connection may stay silent before it is
// asked to answer a query (a connection that hangs, rather than fails, would
// otherwise leave stale answers served).
const listenerCheck = 5 * time.Second

func (s *Server) listenOnce(ctx context.Context) error {
	cfg := s.d.Primary.Config().ConnConfig.Copy()
	// A wait that times out only sets a deadline on the socket (the default also
	// sends the server a cancel request, which could cancel the check that follows).
	cfg.BuildContextWatcherHandler = func(c *pgconn.PgConn) ctxwatch.Handler {
		return &pgconn.DeadlineContextWatcherHandler{Conn: c.Conn()}
	}
	conn, err := pgx.ConnectConfig(ctx, cfg)
	if err != nil {
		return err
	}
	defer conn.Close(context.WithoutCancel(ctx))
	if _, err := conn.Exec(ctx, "LISTEN "+answersChannel); err != nil {
		return err
	}
	// From here every commit that changes an answer is announced to us: answers
	// computed from snapshots taken after this can be kept.
	s.answers.reset(true)
	s.listenerPID.Store(conn.PgConn().PID())
	for {
		wait, cancel := context.WithTimeout(ctx, listenerCheck)
		n, err := conn.WaitForNotification(wait)
		cancel()
		switch {
		case err == nil:
			s.answers.changed(n.Payload)
		case ctx.Err() == nil && pgconn.Timeout(err):
			check, cancel := context.WithTimeout(ctx, listenerCheck)
			_, err = conn.Exec(check, "SELECT 1")
			cancel()
			if err != nil {
				return fmt.Errorf("the listening connection did not answer: %w", err)
			}
		default:
			return err
		}
	}
}
