package server

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"testing"
	"time"

	"github.com/jackc/pgx/v5/pgxpool"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"

	"takt.dev/testkit"
)

func day(d int) time.Time { return time.Date(2026, 11, d, 0, 0, 0, 0, time.UTC) }

func keyOf(tenant, code string, from, to time.Time) answerKey {
	return answerKey{tenant: tenant, scope: "equipment", code: code, bucket: "hour", from: from, to: to}
}

// The cache's rules without a database: nothing is kept or served while it does not
// listen; a change drops the answers it touches (its tenant, the answers whose
// range holds its day) and refuses an answer computed before it; the byte bound
// drops the least recently used; an answer larger than a quarter of it is not kept.
func TestAnswerCacheRules(t *testing.T) {
	c := newAnswerCache(1<<20, prometheus.NewRegistry())
	count := func(result string) float64 { return testutil.ToFloat64(c.requests.WithLabelValues(result)) }
	k24 := keyOf("a", "filler-1", day(24), day(25))
	k25 := keyOf("a", "filler-1", day(25), day(26))
	kWeek := keyOf("a", "filler-1", day(20), day(27))
	kb := keyOf("b", "filler-1", day(25), day(26))
	body := []byte(`{"oee":0.5}`)

	if got, tk := c.lookup(k24); got != nil || tk.ok || count("off") != 1 {
		t.Fatalf("not listening: %q %+v", got, tk)
	}
	c.reset(true)
	keep := func(k answerKey) {
		t.Helper()
		got, tk := c.lookup(k)
		if got != nil || !tk.ok {
			t.Fatalf("%v: want a miss with a ticket, got %q", k, got)
		}
		c.store(k, tk, body)
		if got, _ := c.lookup(k); !bytes.Equal(got, body) {
			t.Fatalf("%v: not kept", k)
		}
	}
	for _, k := range []answerKey{k24, k25, kWeek, kb} {
		keep(k)
	}
	// a's windows of the 25th changed: the answers holding that day go, the 24th stays.
	c.changed("a 2026-11-25")
	for k, want := range map[answerKey]bool{k24: true, k25: false, kWeek: false, kb: true} {
		if got, _ := c.lookup(k); (got != nil) != want {
			t.Errorf("after a's change of the 25th, %v kept = %v, want %v", k, got != nil, want)
		}
	}
	// An answer read before a change of its tenant is not kept; another tenant's is.
	_, tkA := c.lookup(k25)
	_, tkB := c.lookup(keyOf("b", "capper-1", day(25), day(26)))
	c.changed("a 2026-11-01")
	c.store(k25, tkA, body)
	c.store(keyOf("b", "capper-1", day(25), day(26)), tkB, body)
	if got, _ := c.lookup(k25); got != nil {
		t.Error("an answer computed before its tenant changed was kept")
	}
	if got, _ := c.lookup(keyOf("b", "capper-1", day(25), day(26))); got == nil {
		t.Error("b's answer was refused for a's change")
	}
	// A hierarchy change drops every answer of the tenant; '*' every answer.
	c.changed("a")
	if got, _ := c.lookup(k24); got != nil {
		t.Error("a's answers kept after a change of its hierarchy")
	}
	if got, _ := c.lookup(kb); got == nil {
		t.Error("b's answers dropped for a change of a's hierarchy")
	}
	c.changed("*")
	if got, _ := c.lookup(kb); got != nil || testutil.ToFloat64(c.entries) != 0 {
		t.Error("answers kept after a truncation")
	}
	// A truncation announced while not listening does not turn the cache on.
	c.reset(false)
	c.changed("*")
	if got, tk := c.lookup(k24); got != nil || tk.ok {
		t.Error("the cache serves after a truncation announced while it did not listen")
	}
	c.reset(true)
	// Losing the listening connection drops everything and refuses what was in flight.
	_, tk := c.lookup(k24)
	c.reset(false)
	c.reset(true)
	c.store(k24, tk, body)
	if got, _ := c.lookup(k24); got != nil {
		t.Error("an answer computed before listening started again was kept")
	}

	// The bound: 1 MiB holds seven answers of 128 KiB (with their overhead).
	big := bytes.Repeat([]byte("x"), 128<<10)
	var keys []answerKey
	for i := range 10 {
		k := keyOf("a", fmt.Sprint("eq-", i), day(1), day(2))
		keys = append(keys, k)
		_, tk := c.lookup(k)
		c.store(k, tk, big)
		if i == 6 {
			c.lookup(keys[0]) // the first is used again just before the cache is full: it outlives the next three
		}
	}
	if n, b := testutil.ToFloat64(c.entries), testutil.ToFloat64(c.sizeBytes); n != 7 || b > 1<<20 {
		t.Fatalf("%v answers in %v bytes, want 7 within 1 MiB", n, b)
	}
	if got := testutil.ToFloat64(c.evictions.WithLabelValues("full")); got != 3 {
		t.Errorf("evictions{full} = %v, want 3", got)
	}
	if got, _ := c.lookup(keys[0]); got == nil {
		t.Error("the most recently used answer was evicted")
	}
	if got, _ := c.lookup(keys[1]); got != nil {
		t.Error("the least recently used answer was kept")
	}
	k := keyOf("a", "huge", day(1), day(2))
	_, tk = c.lookup(k)
	c.store(k, tk, bytes.Repeat([]byte("x"), 300<<10))
	if got, _ := c.lookup(k); got != nil {
		t.Error("an answer over a quarter of the bound was kept")
	}
}

// Against PostgreSQL: an answer is served from the cache until a change to its
// windows or its line's equipment commits, then the new figures; a write through the
// server shows in its next answer at once; a lost listening connection turns the
// cache off until it listens again, and a change made meanwhile is not missed.
func TestAnswersFollowChanges(t *testing.T) {
	pool := fixture(t)
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	s := New(Deps{Primary: pool, Log: slog.New(slog.NewTextHandler(io.Discard, nil)), Registry: prometheus.NewRegistry(),
		PII: testkit.PIIKeyring(t), AnswerCacheBytes: 1 << 20})
	ts := httptest.NewServer(s)
	defer ts.Close()
	done := make(chan struct{})
	go func() { s.ListenForChanges(ctx); close(done) }()
	defer func() { cancel(); <-done }()
	c := s.answers
	live := func() {
		t.Helper()
		for deadline := time.Now().Add(10 * time.Second); testutil.ToFloat64(c.liveGauge) != 1; time.Sleep(10 * time.Millisecond) {
			if time.Now().After(deadline) {
				t.Fatal("the server does not listen for changes")
			}
		}
	}
	live()
	count := func(result string) float64 { return testutil.ToFloat64(c.requests.WithLabelValues(result)) }
	const filler = "/api/v1/equipment/filler-1/oee?from=2026-11-25T06:00:00Z&to=2026-11-25T08:00:00Z&bucket=hour"
	const line = "/api/v1/lines/line-1/oee?from=2026-11-25T06:00:00Z&to=2026-11-25T08:00:00Z&bucket=hour"
	get := func(token, path string) OEEResponse {
		t.Helper()
		var r OEEResponse
		if code := call(t, ts, "GET", token, path, "", &r); code != 200 {
			t.Fatalf("GET %s: %d", path, code)
		}
		return r
	}
	// until waits for the answer to show what a committed change made it.
	until := func(token, path string, ok func(OEEResponse) bool) {
		t.Helper()
		for deadline := time.Now().Add(10 * time.Second); !ok(get(token, path)); time.Sleep(5 * time.Millisecond) {
			if time.Now().After(deadline) {
				t.Fatalf("%s still answers %+v", path, get(token, path).Total)
			}
		}
	}

	if r := get("tok-a", filler); r.Total.GoodCount != 6273 {
		t.Fatalf("filler-1: %+v", r.Total)
	}
	// RFC 9211's Cache-Status says how each answer was served.
	const capper = "/api/v1/equipment/capper-1/oee?from=2026-11-25T06:00:00Z&to=2026-11-25T08:00:00Z&bucket=hour"
	for _, want := range []string{"takt-api; fwd=miss; stored", "takt-api; hit"} {
		req, _ := http.NewRequest("GET", ts.URL+capper, nil)
		req.Header.Set("Authorization", "Bearer tok-a")
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		if got := resp.Header.Get("Cache-Status"); got != want {
			t.Fatalf("Cache-Status %q, want %q", got, want)
		}
	}
	get("tok-b", filler)
	hits := count("hit")
	if r := get("tok-a", filler); r.Total.GoodCount != 6273 || count("hit") != hits+1 {
		t.Fatalf("the second read: %+v, hits %v → %v", r.Total, hits, count("hit"))
	}
	// The aggregator rewrites a window: the next answers show it.
	if _, err := pool.Exec(ctx, `UPDATE oee_window SET good_count = 2600 WHERE tenant_id = 'a' AND equipment = 'filler-1' AND starts_at = $1`, h6); err != nil {
		t.Fatal(err)
	}
	until("tok-a", filler, func(r OEEResponse) bool { return r.Total.GoodCount == 6200 })
	if got := testutil.ToFloat64(c.evictions.WithLabelValues("changed")); got < 1 {
		t.Errorf("evictions{changed} = %v after a change", got)
	}
	// b's answer was not touched by a's change.
	hits = count("hit")
	if r := get("tok-b", filler); r.Total.GoodCount != 3600 || count("hit") != hits+1 {
		t.Errorf("b after a's change: %+v, hit %v", r.Total, count("hit") == hits+1)
	}
	// capper-1 moves to another line: line-1 sums filler-1 alone.
	if r := get("tok-a", line); r.Total.TotalCount != 7200 {
		t.Fatalf("line-1: %+v", r.Total)
	}
	_, err := pool.Exec(ctx, `
WITH l AS (INSERT INTO line (tenant_id, area_id, code, name) SELECT tenant_id, area_id, 'line-2', 'L2' FROM line WHERE tenant_id = 'a' AND code = 'line-1' RETURNING tenant_id, id),
w AS (INSERT INTO work_center (tenant_id, line_id, code, name) SELECT tenant_id, id, 'wc', 'WC' FROM l RETURNING id)
UPDATE equipment SET work_center_id = (SELECT id FROM w) WHERE tenant_id = 'a' AND code = 'capper-1'`)
	if err != nil {
		t.Fatal(err)
	}
	until("tok-a", line, func(r OEEResponse) bool { return r.Total.TotalCount == 6300 })
	// A write through this server: its next answer is computed afresh, not waiting
	// for the announcement.
	get("tok-a", line)
	misses := count("miss")
	if code := call(t, ts, "POST", "tok-a", "/api/v1/equipment", `{"code":"sealer-1","name":"Sealer","line":"line-1","ideal_cycle_time_s":1}`, nil); code != 201 {
		t.Fatalf("POST equipment: %d", code)
	}
	get("tok-a", line)
	if count("miss") != misses+1 {
		t.Error("the answer after this server's own write came from the cache")
	}

	// The listening connection is lost: nothing is served from the cache until it
	// listens again, and a change made meanwhile shows.
	pid := s.listenerPID.Load()
	if _, err := pool.Exec(ctx, `SELECT pg_terminate_backend($1)`, pid); err != nil {
		t.Fatal(err)
	}
	for deadline := time.Now().Add(10 * time.Second); s.listenerPID.Load() == pid && testutil.ToFloat64(c.liveGauge) == 1; time.Sleep(time.Millisecond) {
		if time.Now().After(deadline) {
			t.Fatal("the server did not notice its listening connection was lost")
		}
	}
	if _, err := pool.Exec(ctx, `UPDATE oee_window SET good_count = 2500 WHERE tenant_id = 'a' AND equipment = 'filler-1' AND starts_at = $1`, h6); err != nil {
		t.Fatal(err)
	}
	live()
	until("tok-a", filler, func(r OEEResponse) bool { return r.Total.GoodCount == 6100 })
}

// Behind read replicas there is no cache: a replica may lag what the primary
// announced.
func TestNoAnswerCacheBehindReplicas(t *testing.T) {
	pool := fixture(t)
	s := New(Deps{Primary: pool, Replicas: []*pgxpool.Pool{pool}, Log: slog.New(slog.NewTextHandler(io.Discard, nil)),
		Registry: prometheus.NewRegistry(), PII: testkit.PIIKeyring(t), AnswerCacheBytes: 1 << 20})
	if s.answers != nil {
		t.Fatal("an answer cache behind read replicas")
	}
}
