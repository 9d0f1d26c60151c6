package server

import (
	"context"
	"crypto/sha256"
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	"math"
	"net/http"
	"net/http/httptest"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"

	"takt.dev/servicekit/pii"
	"takt.dev/testkit"
)

func TestMain(m *testing.M) { testkit.Main(m) }

var h6 = time.Date(2026, 11, 25, 6, 0, 0, 0, time.UTC)

// fixture: tenants a and b; a has line-1 with filler-1 and capper-1 and two hours of
// windows each; b has its own filler-1. Tokens "tok-a" and "tok-b".
func fixture(t testing.TB) *pgxpool.Pool {
	t.Helper()
	pool := testkit.NewDatabase(t).Pool(t)
	ctx := context.Background()
	for _, tn := range []string{"a", "b"} {
		_, err := pool.Exec(ctx, `
WITH tn AS (INSERT INTO tenant VALUES ($1, $1) RETURNING tenant_id),
s AS (INSERT INTO site (tenant_id, code, name, time_zone) SELECT tenant_id, 'lyon', 'Lyon', 'UTC' FROM tn RETURNING tenant_id, id),
ar AS (INSERT INTO area (tenant_id, site_id, code, name) SELECT tenant_id, id, 'pack', 'Pack' FROM s RETURNING tenant_id, id),
l AS (INSERT INTO line (tenant_id, area_id, code, name) SELECT tenant_id, id, 'line-1', 'L1' FROM ar RETURNING tenant_id, id),
w AS (INSERT INTO work_center (tenant_id, line_id, code, name) SELECT tenant_id, id, 'wc', 'WC' FROM l RETURNING tenant_id, id)
INSERT INTO equipment (tenant_id, work_center_id, code, name, ideal_cycle_time_s)
SELECT tenant_id, id, c, c, 1.0 FROM w, unnest(CASE WHEN $1 = 'a' THEN ARRAY['filler-1','capper-1'] ELSE ARRAY['filler-1'] END) AS c`, tn)
		if err != nil {
			t.Fatal(err)
		}
		sum := sha256.Sum256([]byte("tok-" + tn))
		if _, err := pool.Exec(ctx, `INSERT INTO api_token (tenant_id, name, token_hash, scope) VALUES ($1, 'test-'||$1, $2, 'admin')`, tn, sum[:]); err != nil {
			t.Fatal(err)
		}
	}
	// More tokens of a: ids 3 (read), 4 (manage), 5 (expired).
	for _, tk := range []struct{ token, scope, expires string }{{"tok-read", "read", ""}, {"tok-manage", "manage", ""}, {"tok-expired", "admin", "2020-01-01T00:00:00Z"}} {
		sum := sha256.Sum256([]byte(tk.token))
		if _, err := pool.Exec(ctx, `INSERT INTO api_token (tenant_id, name, token_hash, scope, expires_at) VALUES ('a', $1, $2, $3, nullif($4, '')::timestamptz)`,
			tk.token, sum[:], tk.scope, tk.expires); err != nil {
			t.Fatal(err)
		}
	}
	// a/filler-1: 06:00 planned 3600 run 3000, 2700 parts, 2673 good; 07:00 planned 3600 run 3600, 3600 parts, all good.
	// a/capper-1: 06:00 planned 1800 run 900, 900 parts, 800 good.
	// b/filler-1: 06:00 perfect.
	for _, w := range []struct {
		tenant, eq              string
		start                   time.Time
		planned, run, breakdown float64
		total, good             int64
	}{
		{"a", "filler-1", h6, 3600, 3000, 600, 2700, 2673},
		{"a", "filler-1", h6.Add(time.Hour), 3600, 3600, 0, 3600, 3600},
		{"a", "capper-1", h6, 1800, 900, 900, 900, 800},
		{"b", "filler-1", h6, 3600, 3600, 0, 3600, 3600},
	} {
		a, p, q := w.run/w.planned, float64(w.total)/w.run, float64(w.good)/float64(w.total)
		_, err := pool.Exec(ctx, `INSERT INTO oee_window (tenant_id, equipment, granularity, starts_at, ends_at, planned_s, run_s,
			breakdown_s, not_scheduled_s, ideal_run_s, total_count, good_count, scrap_count, availability, performance, quality, oee, scheduled_s, coverage)
			VALUES ($1, $2, 'hour', $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14, $15, $16, $5, 1)`,
			w.tenant, w.eq, w.start, w.start.Add(time.Hour), w.planned, w.run, w.breakdown, 3600-w.planned, float64(w.total),
			w.total, w.good, w.total-w.good, a, p, q, a*p*q)
		if err != nil {
			t.Fatal(err)
		}
	}
	for i, st := range []int{1, 1, 3, 3, 1} { // running, then a 2-minute stop with reason 101, then running
		_, err := pool.Exec(ctx, `INSERT INTO state_observation (tenant_id, equipment, ts, category, reason_code) VALUES ('a', 'filler-1', $1, $2, $3)`,
			h6.Add(time.Duration(i)*time.Minute), st, map[int]int{1: 0, 3: 101}[st])
		if err != nil {
			t.Fatal(err)
		}
	}
	return pool
}

func newServer(t testing.TB, pool *pgxpool.Pool, replicas ...*pgxpool.Pool) (*Server, *httptest.Server) {
	t.Helper()
	s := New(Deps{Primary: pool, Replicas: replicas, Log: slog.New(slog.NewTextHandler(io.Discard, nil)), Registry: prometheus.NewRegistry(), PII: testkit.PIIKeyring(t)})
	ts := httptest.NewServer(s)
	t.Cleanup(ts.Close)
	return s, ts
}

func call(t *testing.T, ts *httptest.Server, method, token, path, body string, out any) int {
	t.Helper()
	req, _ := http.NewRequest(method, ts.URL+path, strings.NewReader(body))
	if token != "" {
		req.Header.Set("Authorization", "Bearer "+token)
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	if out != nil {
		if err := json.Unmarshal(b, out); err != nil {
			t.Fatalf("%s %s: %s: %v", method, path, b, err)
		}
	}
	return resp.StatusCode
}

type errBody struct {
	Error struct{ Code, Message string }
}

func TestAuthAndTenancy(t *testing.T) {
	_, ts := newServer(t, fixture(t))
	var e errBody
	if code := call(t, ts, "GET", "", "/api/v1/equipment", "", &e); code != 401 || e.Error.Code != "unauthorized" {
		t.Fatalf("no token: %d %+v", code, e)
	}
	if code := call(t, ts, "GET", "tok-nobody", "/api/v1/equipment", "", &e); code != 401 {
		t.Fatalf("unknown token: %d", code)
	}
	var list struct{ Equipment []Equipment }
	if code := call(t, ts, "GET", "tok-a", "/api/v1/equipment", "", &list); code != 200 || len(list.Equipment) != 2 {
		t.Fatalf("tenant a's equipment: %d %+v", code, list)
	}
	if code := call(t, ts, "GET", "tok-b", "/api/v1/equipment", "", &list); code != 200 || len(list.Equipment) != 1 {
		t.Fatalf("tenant b's equipment: %d %+v", code, list)
	}
	// b cannot see a's capper, even by name.
	if code := call(t, ts, "GET", "tok-b", "/api/v1/equipment/capper-1/oee?from=2026-11-25T00:00:00Z&to=2026-11-26T00:00:00Z", "", &e); code != 404 {
		t.Fatalf("cross-tenant: %d %+v", code, e)
	}
}

func TestOEEFromSums(t *testing.T) {
	_, ts := newServer(t, fixture(t))
	var r OEEResponse
	q := "?from=2026-11-25T06:00:00Z&to=2026-11-25T08:00:00Z&bucket=hour"
	if code := call(t, ts, "GET", "tok-a", "/api/v1/equipment/filler-1/oee"+q, "", &r); code != 200 || len(r.Buckets) != 2 {
		t.Fatalf("%d %+v", code, r)
	}
	near := func(name string, got *float64, want float64) {
		t.Helper()
		if got == nil || math.Abs(*got-want) > 1e-9 {
			t.Fatalf("%s = %v, want %v", name, got, want)
		}
	}
	near("hour 6 availability", r.Buckets[0].Availability, 3000.0/3600)
	near("total availability", r.Total.Availability, 6600.0/7200)
	near("total performance", r.Total.Performance, 6300.0/6600)
	near("total quality", r.Total.Quality, 6273.0/6300)
	near("total OEE", r.Total.OEE, 6600.0/7200*6300.0/6600*6273.0/6300)
	if r.Total.TotalCount != 6300 || r.Total.Losses.BreakdownS != 600 {
		t.Fatalf("total %+v", r.Total)
	}

	// The line sums its equipment per bucket: 06:00 has filler (3600 planned) and
	// capper (1800 planned): A = 3900 / 5400, not the average of 0.833 and 0.5.
	if code := call(t, ts, "GET", "tok-a", "/api/v1/lines/line-1/oee"+q, "", &r); code != 200 || len(r.Buckets) != 2 {
		t.Fatalf("line: %d %+v", code, r)
	}
	near("line 06:00 availability", r.Buckets[0].Availability, 3900.0/5400)
	near("line 06:00 quality", r.Buckets[0].Quality, (2673.0+800)/(2700+900))
	if code := call(t, ts, "GET", "tok-a", "/api/v1/sites/lyon/oee"+q, "", &r); code != 200 || r.Total.TotalCount != 7200 {
		t.Fatalf("site: %d %+v", code, r.Total)
	}
}

func TestBadParametersAreNamed(t *testing.T) {
	_, ts := newServer(t, fixture(t))
	for path, param := range map[string]string{
		"/api/v1/equipment/filler-1/oee?to=2026-11-25T08:00:00Z":                                         "from",
		"/api/v1/equipment/filler-1/oee?from=yesterday&to=2026-11-25T08:00:00Z":                          "from",
		"/api/v1/equipment/filler-1/oee?from=2026-11-25T08:00:00Z&to=2026-11-25T06:00:00Z":               "to",
		"/api/v1/equipment/filler-1/oee?from=2026-11-25T06:00:00Z&to=2026-11-25T08:00:00Z&bucket=minute": "bucket",
		"/api/v1/equipment/filler-1/oee?from=2020-01-01T00:00:00Z&to=2026-11-25T08:00:00Z":               "to",
	} {
		var e errBody
		if code := call(t, ts, "GET", "tok-a", path, "", &e); code != 400 || !strings.HasPrefix(e.Error.Message, param+":") {
			t.Errorf("%s: %d %+v, want 400 naming %s", path, code, e, param)
		}
	}
	var e errBody
	if code := call(t, ts, "GET", "tok-a", "/api/v1/nothing", "", &e); code != 404 || e.Error.Code != "not_found" {
		t.Fatalf("unknown endpoint: %d %+v", code, e)
	}
	// A body past MaxBody is refused as too large, on every kind of write, without
	// being read further; one at the bound is decoded (and refused for what it says).
	big := `{"code":"x","name":"` + strings.Repeat("a", MaxBody) + `"}`
	for _, c := range []struct{ method, path string }{
		{"POST", "/api/v1/sites"}, {"PATCH", "/api/v1/equipment/filler-1"}, {"POST", "/api/v1/equipment/filler-1/maintenance"},
	} {
		e = errBody{}
		if code := call(t, ts, c.method, "tok-a", c.path, big, &e); code != 413 || e.Error.Code != "body_too_large" || !strings.Contains(e.Error.Message, "65536 bytes") {
			t.Errorf("%s %s with %d bytes: %d %+v, want 413 naming the bound", c.method, c.path, len(big), code, e)
		}
	}
	atBound := `{"kind":"` + strings.Repeat("a", MaxBody-len(`{"kind":""}`)) + `"}`
	if code := call(t, ts, "POST", "tok-a", "/api/v1/equipment/filler-1/maintenance", atBound, &e); code != 400 || !strings.HasPrefix(e.Error.Message, "kind:") {
		t.Errorf("a body of exactly %d bytes: %d %+v, want it read and its kind refused", len(atBound), code, e)
	}
}

func TestPatchIsAudited(t *testing.T) {
	pool := fixture(t)
	_, ts := newServer(t, pool)
	var eq Equipment
	if code := call(t, ts, "PATCH", "tok-a", "/api/v1/equipment/filler-1", `{"ideal_cycle_time_s": 0.8}`, &eq); code != 200 || *eq.IdealCycleTimeS != 0.8 {
		t.Fatalf("%d %+v", code, eq)
	}
	var actor, before, after string
	err := pool.QueryRow(context.Background(), `SELECT actor, before->>'ideal_cycle_time_s', after->>'ideal_cycle_time_s' FROM audit_log
		WHERE entity = 'equipment' AND entity_id = 'filler-1' AND tenant_id = 'a'`).Scan(&actor, &before, &after)
	if actor, _ = testkit.PIIKeyring(t).Open(pii.Place(ActorColumn, "a"), actor); err != nil || actor != "token:test-a" || before != "1" || after != "0.8" {
		t.Fatalf("audit: %q %q %q %v", actor, before, after, err)
	}
	var e errBody
	if code := call(t, ts, "PATCH", "tok-a", "/api/v1/equipment/filler-1", `{"ideal_cycle_time_s": -1}`, &e); code != 400 || !strings.HasPrefix(e.Error.Message, "ideal_cycle_time_s:") {
		t.Fatalf("negative: %d %+v", code, e)
	}
	if code := call(t, ts, "PATCH", "tok-b", "/api/v1/equipment/capper-1", `{"ideal_cycle_time_s": 2}`, &e); code != 404 {
		t.Fatalf("cross-tenant patch: %d", code)
	}
}

func TestTimelineAndPareto(t *testing.T) {
	_, ts := newServer(t, fixture(t))
	var tl struct{ Intervals []Interval }
	q := "?from=2026-11-25T06:00:00Z&to=2026-11-25T07:00:00Z"
	if code := call(t, ts, "GET", "tok-a", "/api/v1/equipment/filler-1/timeline"+q, "", &tl); code != 200 || len(tl.Intervals) != 3 {
		t.Fatalf("timeline %d %+v", code, tl)
	}
	if iv := tl.Intervals[1]; iv.State != "STOPPED_UNPLANNED" || iv.Reason != 101 || iv.End.Sub(iv.Start) != 2*time.Minute {
		t.Fatalf("the stop: %+v", iv)
	}
	var p struct{ Reasons []DowntimeReason }
	if code := call(t, ts, "GET", "tok-a", "/api/v1/equipment/filler-1/downtime"+q, "", &p); code != 200 || len(p.Reasons) != 1 || p.Reasons[0].DurationS != 120 {
		t.Fatalf("pareto %d %+v", code, p)
	}
	var c struct{ Counts []CountBucket }
	if code := call(t, ts, "GET", "tok-a", "/api/v1/equipment/filler-1/counts?from=2026-11-25T00:00:00Z&to=2026-11-26T00:00:00Z", "", &c); code != 200 || len(c.Counts) != 2 || c.Counts[0].ScrapCount != 27 {
		t.Fatalf("counts %d %+v", code, c)
	}
}

// A replica that cannot be reached does not fail reads: they go to the primary.
func TestReplicaFallback(t *testing.T) {
	pool := fixture(t)
	port, _ := testkit.FreePort()
	dead, err := pgxpool.New(context.Background(), fmt.Sprintf("postgres://x@127.0.0.1:%d/x?connect_timeout=1", port))
	if err != nil {
		t.Fatal(err)
	}
	defer dead.Close()
	s, ts := newServer(t, pool, dead)
	var list struct{ Equipment []Equipment }
	if code := call(t, ts, "GET", "tok-a", "/api/v1/equipment", "", &list); code != 200 || len(list.Equipment) != 2 {
		t.Fatalf("%d %+v", code, list)
	}
	if n := testutil.ToFloat64(s.m.fallbacks); n != 1 {
		t.Fatalf("fallbacks = %v", n)
	}
	// The OEE read (one pipeline) falls back as well.
	var r OEEResponse
	if code := call(t, ts, "GET", "tok-a", "/api/v1/lines/line-1/oee?from=2026-11-25T06:00:00Z&to=2026-11-25T08:00:00Z&bucket=hour", "", &r); code != 200 || r.Total.TotalCount != 7200 {
		t.Fatalf("line OEE through the fallback: %d %+v", code, r.Total)
	}
	if n := testutil.ToFloat64(s.m.fallbacks); n != 2 {
		t.Fatalf("fallbacks = %v", n)
	}
}

// The OEE read runs as one pipeline (an implicit transaction): the role and tenant
// its first statement sets hold for its other statements (each tenant sees its own
// filler-1 and nothing of the other's), and end with it: the connection goes back to
// the pool as its login role, with no tenant and the default statement timeout.
func TestPipelinedReadIsScopedToItsTenant(t *testing.T) {
	pool := fixture(t)
	cfg := pool.Config().Copy()
	cfg.MaxConns, cfg.MinConns = 1, 0 // every request and the check below on one connection
	one, err := pgxpool.NewWithConfig(context.Background(), cfg)
	if err != nil {
		t.Fatal(err)
	}
	defer one.Close()
	var login, timeout string
	if err := one.QueryRow(context.Background(), `SELECT current_user, current_setting('statement_timeout')`).Scan(&login, &timeout); err != nil {
		t.Fatal(err)
	}
	_, ts := newServer(t, one)
	q := "?from=2026-11-25T06:00:00Z&to=2026-11-25T08:00:00Z&bucket=hour"
	for _, c := range []struct {
		token string
		total int64
	}{{"tok-a", 6300}, {"tok-b", 3600}} {
		var r OEEResponse
		if code := call(t, ts, "GET", c.token, "/api/v1/equipment/filler-1/oee"+q, "", &r); code != 200 || r.Total.TotalCount != c.total {
			t.Fatalf("%s: filler-1: %d, %d parts; want %d", c.token, code, r.Total.TotalCount, c.total)
		}
		var user, tenant, st string
		if err := one.QueryRow(context.Background(), `SELECT current_user, current_setting('app.tenant', true), current_setting('statement_timeout')`).
			Scan(&user, &tenant, &st); err != nil {
			t.Fatal(err)
		}
		if user != login || tenant != "" || st != timeout {
			t.Fatalf("after %s's request the connection is %s, tenant %q, statement_timeout %s; want %s, none, %s", c.token, user, tenant, st, login, timeout)
		}
	}
	var e errBody
	if code := call(t, ts, "GET", "tok-b", "/api/v1/equipment/capper-1/oee"+q, "", &e); code != 404 {
		t.Fatalf("b reading a's capper-1: %d %+v", code, e)
	}
}

func TestOpenAPIDocument(t *testing.T) {
	_, ts := newServer(t, fixture(t))
	var doc struct {
		OpenAPI string         `json:"openapi"`
		Paths   map[string]any `json:"paths"`
	}
	if code := call(t, ts, "GET", "", "/api/v1/openapi.json", "", &doc); code != 200 || doc.OpenAPI != "3.1.0" {
		t.Fatalf("%d %+v", code, doc)
	}
	// Every route under /api/v1 is documented.
	for _, p := range []string{"/equipment", "/equipment/{code}", "/equipment/{code}/oee", "/lines/{code}/oee", "/sites/{code}/oee", "/sites", "/sites/{code}", "/sites/{code}/shifts", "/lines", "/products", "/equipment/{code}/planned-stops",
		"/equipment/{code}/timeline", "/equipment/{code}/downtime", "/equipment/{code}/counts", "/sites/{code}/shifts/{id}", "/recompute-failures", "/reasons", "/reasons/{code}", "/equipment/{code}/runs", "/equipment/{code}/runs/{id}", "/equipment/{code}/downtime-events", "/equipment/{code}/maintenance", "/dead-letters"} {
		if doc.Paths[p] == nil {
			t.Errorf("openapi.json lacks %s", p)
		}
	}
}

func TestManagementIsAudited(t *testing.T) {
	pool := fixture(t)
	_, ts := newServer(t, pool)
	steps := []struct {
		method, path, body string
		code               int
	}{
		{"POST", "/api/v1/sites", `{"code": "chicago", "name": "Chicago", "time_zone": "America/Chicago"}`, 201},
		{"POST", "/api/v1/sites", `{"code": "chicago", "name": "Again", "time_zone": "UTC"}`, 409},
		{"POST", "/api/v1/sites", `{"code": "mars", "name": "Mars", "time_zone": "Mars/Olympus"}`, 400},
		{"PATCH", "/api/v1/sites/chicago", `{"name": "Chicago plant"}`, 200},
		{"POST", "/api/v1/lines", `{"site": "chicago", "area": "bottling", "code": "line-9", "name": "Line 9"}`, 201},
		{"POST", "/api/v1/lines", `{"site": "nowhere", "area": "x", "code": "line-8", "name": "X"}`, 400},
		{"POST", "/api/v1/equipment", `{"code": "press-9", "name": "Press", "line": "line-9", "ideal_cycle_time_s": 2}`, 201},
		{"POST", "/api/v1/equipment", `{"code": "press-0", "name": "Press", "line": "line-9", "ideal_cycle_time_s": -2}`, 400},
		{"POST", "/api/v1/products", `{"code": "cap-38", "name": "Cap 38 mm", "ideal_cycle_time_s": 0.3}`, 201},
		{"POST", "/api/v1/sites/chicago/shifts", `{"name": "early", "starts_at": "06:00", "duration": "8h", "weekdays": [1,2,3,4,5], "breaks": [{"name": "lunch", "offset": "4h", "duration": "30m"}]}`, 201},
		{"POST", "/api/v1/sites/chicago/shifts", `{"name": "late", "starts_at": "25:00", "duration": "8h"}`, 400},
		{"POST", "/api/v1/equipment/press-9/planned-stops", `{"start": "2026-12-24T00:00:00Z", "end": "2026-12-27T00:00:00Z", "reason": "holidays"}`, 201},
		{"POST", "/api/v1/equipment/press-9/planned-stops", `{"start": "2026-12-24T00:00:00Z", "end": "2026-12-23T00:00:00Z"}`, 400},
		{"POST", "/api/v1/products", `{"code": "x", "name": "x", "ideal_cycle_time_s": 1, "colour": "red"}`, 400},
	}
	for _, st := range steps {
		var e errBody
		if code := call(t, ts, st.method, "tok-a", st.path, st.body, &e); code != st.code {
			t.Fatalf("%s %s %s: %d %+v, want %d", st.method, st.path, st.body, code, e, st.code)
		}
	}
	if actors := auditActors(t, pool, `tenant_id = 'a'`); len(actors) != 7 || slices.ContainsFunc(actors, func(a string) bool { return a != "token:test-a" }) {
		t.Fatalf("audit rows by %q, want one per accepted change (7) by token:test-a", actors)
	}
	var shifts struct{ Shifts []map[string]any }
	if code := call(t, ts, "GET", "tok-a", "/api/v1/sites/chicago/shifts", "", &shifts); code != 200 || len(shifts.Shifts) != 1 || shifts.Shifts[0]["starts_at"] != "06:00" {
		t.Fatalf("shifts: %d %+v", code, shifts)
	}
	// Tenant b sees none of it.
	var sites struct{ Sites []map[string]any }
	if code := call(t, ts, "GET", "tok-b", "/api/v1/sites", "", &sites); code != 200 || len(sites.Sites) != 1 {
		t.Fatalf("tenant b's sites: %+v", sites)
	}
}

// Every change that OEE depends on marks the days it touches for recomputation, and
// what the API writes it reads back in the same format.
func TestChangesMarkDaysForRecomputation(t *testing.T) {
	pool := fixture(t)
	ctx := context.Background()
	// A day window for a/filler-1 and a/capper-1 on 2026-11-25 (UTC site).
	for _, eq := range []string{"filler-1", "capper-1"} {
		if _, err := pool.Exec(ctx, `INSERT INTO oee_window (tenant_id, equipment, granularity, starts_at, ends_at, planned_s, run_s,
			total_count, good_count) VALUES ('a', $1, 'day', '2026-11-25T00:00:00Z', '2026-11-26T00:00:00Z', 0, 0, 0, 0)`, eq); err != nil {
			t.Fatal(err)
		}
	}
	_, ts := newServer(t, pool)
	dirty := func() []string {
		t.Helper()
		var out []string
		rows, _ := pool.Query(ctx, `SELECT tenant_id || '/' || equipment || ' ' || day::text FROM oee_dirty ORDER BY 1`)
		for rows.Next() {
			var s string
			rows.Scan(&s)
			out = append(out, s)
		}
		pool.Exec(ctx, `DELETE FROM oee_dirty`)
		return out
	}
	want := func(what string, got []string, w ...string) {
		t.Helper()
		if fmt.Sprint(got) != fmt.Sprint(w) {
			t.Fatalf("%s marked %v, want %v", what, got, w)
		}
	}
	if code := call(t, ts, "PATCH", "tok-a", "/api/v1/equipment/filler-1", `{"ideal_cycle_time_s": 0.5}`, nil); code != 200 {
		t.Fatalf("PATCH: %d", code)
	}
	want("ideal cycle time", dirty(), "a/filler-1 2026-11-25")
	if code := call(t, ts, "POST", "tok-a", "/api/v1/equipment/capper-1/planned-stops",
		`{"start":"2026-11-25T10:00:00Z","end":"2026-11-25T10:30:00Z","reason":"cleaning"}`, nil); code != 201 {
		t.Fatalf("planned stop: %d", code)
	}
	want("planned stop", dirty(), "a/capper-1 2026-11-25")
	var created Shift
	if code := call(t, ts, "POST", "tok-a", "/api/v1/sites/lyon/shifts",
		`{"name":"early","starts_at":"06:00","duration":"08:00:00","breaks":[{"name":"lunch","offset":"4h","duration":"00:30:00"}],"valid_from":"2026-11-20"}`, &created); code != 201 {
		t.Fatalf("shift: %d", code)
	}
	want("shift", dirty(), "a/capper-1 2026-11-25", "a/filler-1 2026-11-25")
	// What GET returns, POST takes back: durations round-trip.
	var shifts struct{ Shifts []Shift }
	if code := call(t, ts, "GET", "tok-a", "/api/v1/sites/lyon/shifts", "", &shifts); code != 200 || len(shifts.Shifts) != 1 {
		t.Fatalf("shifts: %d %+v", code, shifts)
	}
	sh := shifts.Shifts[0]
	if sh.Duration != "08:00:00" || sh.Breaks[0].Offset != "04:00:00" || sh.ValidFrom != "2026-11-20" || sh.ID != created.ID {
		t.Fatalf("shift read back as %+v", sh)
	}
	sh.Name, sh.ValidFrom = "late", "2026-12-01"
	body, _ := json.Marshal(sh)
	if code := call(t, ts, "POST", "tok-a", "/api/v1/sites/lyon/shifts", string(body), nil); code != 201 {
		t.Fatalf("posting back what GET returned: %d", code)
	}
	want("a shift valid from later", dirty())
	if code := call(t, ts, "DELETE", "tok-a", fmt.Sprintf("/api/v1/sites/lyon/shifts/%d", created.ID), "", nil); code != 200 {
		t.Fatalf("delete shift: %d", code)
	}
	want("deleted shift", dirty(), "a/capper-1 2026-11-25", "a/filler-1 2026-11-25")
	if code := call(t, ts, "DELETE", "tok-b", fmt.Sprintf("/api/v1/sites/lyon/shifts/%d", created.ID), "", nil); code != 404 {
		t.Fatalf("tenant b deleting a's shift: %d", code)
	}
	if code := call(t, ts, "PATCH", "tok-a", "/api/v1/sites/lyon", `{"time_zone":"Europe/Paris"}`, nil); code != 200 {
		t.Fatalf("time zone: %d", code)
	}
	want("time zone", dirty(), "a/capper-1 2026-11-25", "a/filler-1 2026-11-25")

	// Days set aside are visible to their tenant only.
	if _, err := pool.Exec(ctx, `INSERT INTO oee_dirty (tenant_id, equipment, day, attempts, last_error, not_before) VALUES
		('a', 'filler-1', '2026-11-24', 3, 'boom', now() + interval '1 minute'), ('b', 'filler-1', '2026-11-24', 1, 'other', now())`); err != nil {
		t.Fatal(err)
	}
	var fs struct {
		Failures []struct {
			Equipment, Day, Error string
			Attempts              int
		}
	}
	if code := call(t, ts, "GET", "tok-a", "/api/v1/recompute-failures", "", &fs); code != 200 || len(fs.Failures) != 1 ||
		fs.Failures[0].Equipment != "filler-1" || fs.Failures[0].Day != "2026-11-24" || fs.Failures[0].Attempts != 3 || fs.Failures[0].Error != "boom" {
		t.Fatalf("failures: %d %+v", code, fs)
	}
}

// Runs, reasons and maintenance through the API: a run marks its days, runs of one
// equipment never overlap, the Pareto names reasons from the catalogue.
func TestRunsReasonsAndMaintenance(t *testing.T) {
	pool := fixture(t)
	ctx := context.Background()
	if _, err := pool.Exec(ctx, `INSERT INTO oee_window (tenant_id, equipment, granularity, starts_at, ends_at, planned_s, run_s, total_count, good_count)
		VALUES ('a', 'filler-1', 'day', '2026-11-25T00:00:00Z', '2026-11-26T00:00:00Z', 0, 0, 0, 0)`); err != nil {
		t.Fatal(err)
	}
	_, ts := newServer(t, pool)
	for _, p := range []string{`{"code":"cola","name":"Cola 0.5 l","ideal_cycle_time_s":1}`, `{"code":"juice","name":"Juice 1 l","ideal_cycle_time_s":2}`} {
		if code := call(t, ts, "POST", "tok-a", "/api/v1/products", p, nil); code != 201 {
			t.Fatalf("product: %d", code)
		}
	}
	var run struct{ ID int64 }
	if code := call(t, ts, "POST", "tok-a", "/api/v1/equipment/filler-1/runs", `{"product":"cola","start":"2026-11-25T06:00:00Z","end":"2026-11-25T09:00:00Z","order_id":"PO-1"}`, &run); code != 201 || run.ID == 0 {
		t.Fatalf("run: %d %+v", code, run)
	}
	var n int
	pool.QueryRow(ctx, `SELECT count(*) FROM oee_dirty WHERE tenant_id = 'a' AND equipment = 'filler-1' AND day = '2026-11-25'`).Scan(&n)
	if n != 1 {
		t.Fatal("a new run did not mark its day for recomputation")
	}
	var e errBody
	if code := call(t, ts, "POST", "tok-a", "/api/v1/equipment/filler-1/runs", `{"product":"juice","start":"2026-11-25T08:00:00Z"}`, &e); code != 409 {
		t.Fatalf("overlapping run: %d %+v", code, e)
	}
	if code := call(t, ts, "POST", "tok-a", "/api/v1/equipment/filler-1/runs", `{"product":"lemonade","start":"2026-11-25T10:00:00Z"}`, &e); code != 404 || !strings.Contains(e.Error.Message, "lemonade") {
		t.Fatalf("unknown product: %d %+v", code, e)
	}
	if code := call(t, ts, "POST", "tok-a", "/api/v1/equipment/filler-1/runs", `{"product":"juice","start":"2026-11-25T09:30:00Z"}`, nil); code != 201 {
		t.Fatalf("open run: %d", code)
	}
	var runs struct {
		Runs []struct {
			Product string
			End     *time.Time
		}
	}
	if code := call(t, ts, "GET", "tok-a", "/api/v1/equipment/filler-1/runs?from=2026-11-25T00:00:00Z&to=2026-11-26T00:00:00Z", "", &runs); code != 200 ||
		len(runs.Runs) != 2 || runs.Runs[0].Product != "cola" || runs.Runs[1].End != nil {
		t.Fatalf("runs: %d %+v", code, runs)
	}
	if code := call(t, ts, "GET", "tok-b", "/api/v1/equipment/filler-1/runs?from=2026-11-25T00:00:00Z&to=2026-11-26T00:00:00Z", "", &runs); code != 200 || len(runs.Runs) != 0 {
		t.Fatalf("tenant b sees a's runs: %+v", runs)
	}
	if code := call(t, ts, "DELETE", "tok-a", fmt.Sprintf("/api/v1/equipment/filler-1/runs/%d", run.ID), "", nil); code != 200 {
		t.Fatalf("delete run: %d", code)
	}

	if code := call(t, ts, "POST", "tok-a", "/api/v1/reasons", `{"code":101,"name":"Jam at the infeed","category":"breakdown"}`, nil); code != 201 {
		t.Fatalf("reason: %d", code)
	}
	if code := call(t, ts, "POST", "tok-a", "/api/v1/reasons", `{"code":101,"name":"again"}`, nil); code != 409 {
		t.Fatalf("duplicate reason: %d", code)
	}
	if code := call(t, ts, "PATCH", "tok-a", "/api/v1/reasons/101", `{"name":"Jam at the bottle infeed","category":"breakdown"}`, nil); code != 200 {
		t.Fatalf("rename reason: %d", code)
	}
	var pareto struct {
		Reasons []DowntimeReason
	}
	q := "?from=" + h6.Format(time.RFC3339) + "&to=" + h6.Add(time.Hour).Format(time.RFC3339)
	if code := call(t, ts, "GET", "tok-a", "/api/v1/equipment/filler-1/downtime"+q, "", &pareto); code != 200 || len(pareto.Reasons) != 1 ||
		pareto.Reasons[0].ReasonName != "Jam at the bottle infeed" {
		t.Fatalf("pareto: %d %+v", code, pareto)
	}
	if code := call(t, ts, "GET", "tok-b", "/api/v1/reasons", "", &struct{}{}); code != 200 {
		t.Fatalf("reasons of b: %d", code)
	}
	if code := call(t, ts, "POST", "tok-a", "/api/v1/equipment/filler-1/maintenance", `{"kind":"corrective","start":"2026-11-25T06:05:00Z","end":"2026-11-25T06:20:00Z","description":"cleared the jam","technician":"M. Curie"}`, nil); code != 201 {
		t.Fatalf("maintenance: %d", code)
	}
	if code := call(t, ts, "POST", "tok-a", "/api/v1/equipment/filler-1/maintenance", `{"kind":"magic","start":"2026-11-25T06:05:00Z"}`, &e); code != 400 || !strings.Contains(e.Error.Message, "magic") {
		t.Fatalf("bad kind: %d %+v", code, e)
	}
	var m struct {
		Maintenance []struct{ Description string }
	}
	if code := call(t, ts, "GET", "tok-a", "/api/v1/equipment/filler-1/maintenance"+q, "", &m); code != 200 || len(m.Maintenance) != 1 || m.Maintenance[0].Description != "cleared the jam" {
		t.Fatalf("maintenance list: %d %+v", code, m)
	}
	var audited int
	pool.QueryRow(ctx, `SELECT count(*) FROM audit_log WHERE entity IN ('production_run', 'downtime_reason', 'maintenance_event')`).Scan(&audited)
	if audited != 6 {
		t.Fatalf("%d audited changes, want 6", audited)
	}
}

// A line code names a line within its site; PATCH and DELETE exist wherever POST does.
func TestAddressingAndTheWholeLifecycle(t *testing.T) {
	pool := fixture(t)
	_, ts := newServer(t, pool)
	var e errBody
	steps := []struct {
		method, path, body string
		status             int
		msg                string
	}{
		{"POST", "/api/v1/sites", `{"code":"turin","name":"Turin","time_zone":"Europe/Rome"}`, 201, ""},
		{"POST", "/api/v1/lines", `{"site":"turin","area":"pack","code":"line-1","name":"Turin 1"}`, 201, ""},
		{"POST", "/api/v1/equipment", `{"code":"filler-9","name":"F9","line":"line-1"}`, 409, "exists at sites [lyon turin]"},
		{"POST", "/api/v1/equipment", `{"code":"filler-9","name":"F9","site":"turin","line":"line-1"}`, 201, ""},
		{"POST", "/api/v1/equipment", `{"code":"filler-8","name":"F8","site":"paris","line":"line-1"}`, 400, `does not exist at site "paris"`},
		{"GET", "/api/v1/lines/line-1/oee?bucket=hour&from=2026-11-25T06:00:00Z&to=2026-11-25T08:00:00Z", "", 409, "name the site"},
		{"GET", "/api/v1/lines/line-1/oee?site=lyon&bucket=hour&from=2026-11-25T06:00:00Z&to=2026-11-25T08:00:00Z", "", 200, ""},
		{"PATCH", "/api/v1/lines/line-1?site=turin", `{"name":"Torino 1"}`, 200, ""},
		{"DELETE", "/api/v1/lines/line-1?site=turin", "", 409, "has 1 equipment"},
		{"GET", "/api/v1/equipment/filler-9", "", 200, ""},
		{"DELETE", "/api/v1/equipment/filler-9", "", 200, ""},
		{"GET", "/api/v1/equipment/filler-9", "", 404, ""},
		{"DELETE", "/api/v1/sites/turin", "", 409, "has 1 lines"},
		{"DELETE", "/api/v1/lines/line-1?site=turin", "", 200, ""},
		{"POST", "/api/v1/sites/turin/shifts", `{"name":"early","starts_at":"06:00","duration":"08:00:00","valid_from":"2026-01-01"}`, 201, ""},
		{"PATCH", "/api/v1/sites/turin/shifts/1", `{"valid_to":"2025-12-31"}`, 400, "before valid_from"},
		{"PATCH", "/api/v1/sites/turin/shifts/1", `{"valid_to":"2026-11-30","name":"early (old)"}`, 200, ""},
		{"DELETE", "/api/v1/sites/turin", "", 200, ""},
		{"POST", "/api/v1/products", `{"code":"cola","name":"Cola","ideal_cycle_time_s":0.5}`, 201, ""},
		{"POST", "/api/v1/equipment/filler-1/runs", `{"product":"cola","start":"2026-11-25T06:00:00Z","end":"2026-11-25T07:00:00Z"}`, 201, ""},
		{"PATCH", "/api/v1/products/cola", `{"ideal_cycle_time_s":0.6}`, 200, ""},
		{"PATCH", "/api/v1/products/cola", `{"ideal_cycle_time_s":0}`, 400, "must be more than 0"},
		{"DELETE", "/api/v1/products/cola", "", 409, "has production runs"},
		{"DELETE", "/api/v1/equipment/filler-1", "", 409, "has production runs"},
		{"POST", "/api/v1/equipment/filler-1/planned-stops", `{"start":"2026-11-25T10:00:00Z","end":"2026-11-25T10:30:00Z","reason":"cleaning"}`, 201, ""},
		{"PATCH", "/api/v1/equipment/filler-1/planned-stops/1", `{"end":"2026-11-25T10:45:00Z"}`, 200, ""},
		{"PATCH", "/api/v1/equipment/filler-1/planned-stops/1", `{"end":"2026-11-25T09:00:00Z"}`, 400, "must be after start"},
		{"DELETE", "/api/v1/equipment/filler-1/planned-stops/1", "", 200, ""},
		{"DELETE", "/api/v1/equipment/filler-1/planned-stops/1", "", 404, ""},
	}
	for _, st := range steps {
		e = errBody{}
		code := call(t, ts, st.method, "tok-a", st.path, st.body, &e)
		if code != st.status || !strings.Contains(e.Error.Message, st.msg) {
			t.Fatalf("%s %s: %d %q, want %d %q", st.method, st.path, code, e.Error.Message, st.status, st.msg)
		}
	}
	// The product's new ideal cycle time marked the day of its run.
	var n int
	pool.QueryRow(context.Background(), `SELECT count(*) FROM oee_dirty WHERE equipment = 'filler-1' AND day = '2026-11-25'`).Scan(&n)
	if n != 1 {
		t.Fatal("changing a product's ideal cycle time did not mark the day of its run")
	}
	pool.QueryRow(context.Background(), `SELECT count(*) FROM audit_log WHERE action = 'delete'`).Scan(&n)
	if n != 4 {
		t.Fatalf("%d deletions audited, want 4 (equipment, line, site, planned stop)", n)
	}
}

// A tenant sees its own refused messages, not another's.
func TestDeadLettersPerTenant(t *testing.T) {
	pool := fixture(t)
	if _, err := pool.Exec(context.Background(), `INSERT INTO dead_letter (kafka_partition, kafka_offset, tenant_id, received_at, reason, error, source, payload_bytes, payload_sha256)
		VALUES (0, 7, 'a', '2026-11-25T08:00:00Z', 'invalid', 'tag: control character', 'mqtt:takt/v1/a/lyon/pack/line-1/filler-1', 120, 'ab'),
		       (0, 8, 'b', '2026-11-25T08:00:00Z', 'invalid', 'other tenant', 'mqtt:takt/v1/b/x/y/z/w', 1, 'cd'),
		       (0, 9, NULL, '2026-11-25T08:00:00Z', 'topic_mismatch', 'no tenant', 'mqtt:elsewhere', 1, 'ef')`); err != nil {
		t.Fatal(err)
	}
	_, ts := newServer(t, pool)
	var got struct {
		DeadLetters []DeadLetter `json:"dead_letters"`
	}
	q := "/api/v1/dead-letters?from=2026-11-25T00:00:00Z&to=2026-11-26T00:00:00Z"
	if code := call(t, ts, "GET", "tok-a", q, "", &got); code != 200 || len(got.DeadLetters) != 1 || got.DeadLetters[0].Error != "tag: control character" {
		t.Fatalf("tenant a: %d %+v", code, got)
	}
	if code := call(t, ts, "GET", "tok-b", q+"&reason=too_large", "", &got); code != 200 || len(got.DeadLetters) != 0 {
		t.Fatalf("tenant b, too_large: %d %+v", code, got)
	}
}

// A client guessing tokens costs the database a query per guess only until its
// failures outrun the allowance: then 429 with Retry-After, no query; a good token
// from elsewhere is never slowed. Every answer carries the security headers, the
// dashboard's policy allows no inline script, and /readyz says nothing of the
// database's error.
func TestGuessingTokensIsThrottledAndHeadersAreSet(t *testing.T) {
	pool := fixture(t)
	_, ts := newServer(t, pool)
	statuses := map[int]int{}
	var retry string
	for i := range 30 {
		req, _ := http.NewRequest("GET", ts.URL+"/api/v1/equipment", nil)
		req.Header.Set("Authorization", fmt.Sprintf("Bearer guess-%d", i))
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		statuses[resp.StatusCode]++
		if resp.StatusCode == 429 {
			retry = resp.Header.Get("Retry-After")
		}
	}
	if statuses[401] < 19 || statuses[401] > 22 || statuses[429] < 8 || retry == "" {
		t.Fatalf("30 guesses: %v (Retry-After %q); want about 20 refused as 401, then 429 with Retry-After", statuses, retry)
	}
	if code := call(t, ts, "GET", "tok-a", "/api/v1/equipment", "", nil); code != 429 {
		t.Fatalf("a good token from the throttled address: %d, want 429 (the address is throttled, not the token)", code)
	}
	// Another address is not throttled: the guard is per client.
	s2, _ := newServer(t, pool)
	rec := httptest.NewRecorder()
	req := httptest.NewRequest("GET", "/api/v1/equipment", nil)
	req.RemoteAddr = "192.0.2.7:5000"
	req.Header.Set("Authorization", "Bearer tok-a")
	s2.ServeHTTP(rec, req)
	if rec.Code != 200 {
		t.Fatalf("a good token from a fresh address: %d", rec.Code)
	}
	for _, h := range []string{"X-Content-Type-Options", "Referrer-Policy", "X-Frame-Options"} {
		if rec.Header().Get(h) == "" {
			t.Errorf("header %s missing", h)
		}
	}
	resp, err := http.Get(ts.URL + "/")
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	csp := resp.Header.Get("Content-Security-Policy")
	if !strings.Contains(csp, "script-src 'self'") || strings.Contains(csp, "script-src 'unsafe-inline'") || !strings.Contains(csp, "frame-ancestors 'none'") {
		t.Fatalf("dashboard CSP %q", csp)
	}
	dead, err := pgxpool.New(context.Background(), "postgres://nobody:secret@127.0.0.1:1/takt?connect_timeout=1")
	if err != nil {
		t.Fatal(err)
	}
	defer dead.Close()
	_, tsDead := newServer(t, dead)
	resp, err = http.Get(tsDead.URL + "/readyz")
	if err != nil {
		t.Fatal(err)
	}
	body, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if resp.StatusCode != 503 || strings.TrimSpace(string(body)) != "database unreachable" {
		t.Fatalf("/readyz with the database away: %d %q", resp.StatusCode, body)
	}
}

// The API as a login role of takt_api (migration 00018), not the tables' owner:
// every call works, and the role cannot bypass row-level security: with no tenant
// set it sees no row, as itself or as takt_app, and it cannot switch RLS off.
func TestAsTheLeastPrivilegeRole(t *testing.T) {
	owner := fixture(t)
	ctx := context.Background()
	login := fmt.Sprintf("takt_api_test_%d", time.Now().UnixNano())
	if _, err := owner.Exec(ctx, `CREATE ROLE `+login+` LOGIN IN ROLE takt_api`); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { owner.Exec(context.Background(), `DROP ROLE IF EXISTS `+login) })
	cfg := owner.Config().Copy()
	cfg.ConnConfig.User = login
	pool, err := pgxpool.NewWithConfig(ctx, cfg)
	if err != nil {
		t.Fatal(err)
	}
	defer pool.Close()
	_, ts := newServer(t, pool)
	var list struct{ Equipment []map[string]any }
	for _, c := range []struct {
		method, token, path, body string
		want                      int
	}{
		{"GET", "tok-a", "/api/v1/equipment", "", 200},
		{"GET", "tok-b", "/api/v1/equipment/capper-1", "", 404}, // tenant a's
		{"POST", "tok-a", "/api/v1/sites", `{"code":"oslo","name":"Oslo","time_zone":"Europe/Oslo"}`, 201},
		{"PATCH", "tok-a", "/api/v1/equipment/filler-1", `{"ideal_cycle_time_s": 0.8}`, 200},
		{"GET", "tok-a", "/api/v1/tokens", "", 200},
		{"DELETE", "tok-a", "/api/v1/tokens/3", "", 200},
		{"GET", "tok-read", "/api/v1/equipment", "", 401},
	} {
		if code := call(t, ts, c.method, c.token, c.path, c.body, nil); code != c.want {
			t.Fatalf("%s %s as the API's role: %d, want %d", c.method, c.path, code, c.want)
		}
	}
	if code := call(t, ts, "GET", "tok-a", "/api/v1/equipment", "", &list); code != 200 || len(list.Equipment) != 2 {
		t.Fatalf("tenant a's equipment: %d %v", code, list)
	}
	// Row-level security holds for the role itself, whatever it sets: no tenant,
	// nothing; takt_app without a tenant, nothing. (The owner sees all 3.)
	var byItself, asApp int
	if err := pool.QueryRow(ctx, `SELECT count(*) FROM equipment`).Scan(&byItself); err != nil || byItself != 0 {
		t.Fatalf("the API's role reading equipment with no tenant set: %d rows (%v), want none", byItself, err)
	}
	err = pgx.BeginTxFunc(ctx, pool, pgx.TxOptions{}, func(tx pgx.Tx) error {
		if _, err := tx.Exec(ctx, `SET LOCAL ROLE takt_app`); err != nil {
			return err
		}
		return tx.QueryRow(ctx, `SELECT count(*) FROM equipment`).Scan(&asApp)
	})
	if err != nil || asApp != 0 {
		t.Fatalf("as takt_app with no tenant set: %d rows (%v), want none", asApp, err)
	}
	if _, err := pool.Exec(ctx, `ALTER TABLE equipment DISABLE ROW LEVEL SECURITY`); err == nil {
		t.Fatal("the API's role could switch row-level security off")
	}
	var audited int
	owner.QueryRow(ctx, `SELECT count(*) FROM audit_log WHERE entity IN ('site', 'equipment', 'api_token')`).Scan(&audited)
	if audited != 3 {
		t.Fatalf("%d audit entries, want 3 (site, equipment, token)", audited)
	}
}

// API metrics carry the method and the route (the pattern, never the raw path).
func TestMetricsByRoute(t *testing.T) {
	pool := fixture(t)
	s, ts := newServer(t, pool)
	call(t, ts, "GET", "tok-a", "/api/v1/equipment/filler-1", "", nil)
	call(t, ts, "GET", "tok-a", "/api/v1/equipment/capper-1", "", nil)
	call(t, ts, "GET", "tok-a", "/nowhere/at/all", "", nil)
	mfs, err := s.d.Registry.Gather()
	if err != nil {
		t.Fatal(err)
	}
	got := map[string]float64{}
	for _, mf := range mfs {
		if mf.GetName() != "takt_api_requests_total" {
			continue
		}
		for _, m := range mf.GetMetric() {
			l := map[string]string{}
			for _, p := range m.GetLabel() {
				l[p.GetName()] = p.GetValue()
			}
			got[l["method"]+" "+l["route"]+" "+l["code"]] += m.GetCounter().GetValue()
		}
	}
	if got["GET /api/v1/equipment/{code} 200"] != 2 || got["GET unmatched 404"] != 1 {
		t.Fatalf("takt_api_requests_total: %v", got)
	}
}

// auditActors returns the actors of the audit rows that match where, opened: the
// audit log keeps them sealed.
func auditActors(t *testing.T, pool *pgxpool.Pool, where string) []string {
	t.Helper()
	rows, err := pool.Query(context.Background(), `SELECT tenant_id, actor FROM audit_log WHERE `+where+` ORDER BY id`)
	if err != nil {
		t.Fatal(err)
	}
	var out []string
	keys := testkit.PIIKeyring(t)
	for rows.Next() {
		var tenant, sealed string
		if err := rows.Scan(&tenant, &sealed); err != nil {
			t.Fatal(err)
		}
		if !pii.Sealed(sealed) {
			t.Fatalf("audit actor %q stored in clear", sealed)
		}
		actor, err := keys.Open(pii.Place(ActorColumn, tenant), sealed)
		if err != nil {
			t.Fatal(err)
		}
		out = append(out, actor)
	}
	return out
}

// Rate limits per token and per client address: past its budget a request is a 429
// with Retry-After, counted by what limited it, and other tokens and addresses go
// on. A token the database does not know is refused from a negative cache the
// second time, without a query.
func TestRateLimitsAndTheNegativeCache(t *testing.T) {
	pool := fixture(t)
	serve := func(tokenRate, addressRate float64) (*Server, func(token, addr string) *httptest.ResponseRecorder) {
		s := New(Deps{Primary: pool, Log: slog.New(slog.NewTextHandler(io.Discard, nil)), Registry: prometheus.NewRegistry(),
			PII: testkit.PIIKeyring(t), TokenRate: tokenRate, AddressRate: addressRate})
		return s, func(token, addr string) *httptest.ResponseRecorder {
			rec := httptest.NewRecorder()
			req := httptest.NewRequest("GET", "/api/v1/equipment", nil)
			req.RemoteAddr = addr + ":5000"
			req.Header.Set("Authorization", "Bearer "+token)
			s.ServeHTTP(rec, req)
			return rec
		}
	}
	// 2/s per token: a burst of 4, then 429 by token; another token from the same
	// address goes on.
	s, get := serve(2, -1)
	codes := map[int]int{}
	for range 6 {
		codes[get("tok-a", "192.0.2.1").Code]++
	}
	if codes[200] != 4 || codes[429] != 2 {
		t.Fatalf("6 quick requests of one token at 2/s: %v, want 4 answered and 2 refused", codes)
	}
	rec := get("tok-a", "192.0.2.1")
	if rec.Code != 429 || rec.Header().Get("Retry-After") == "" || !strings.Contains(rec.Body.String(), "too many requests from this token") {
		t.Fatalf("past the token's budget: %d %q %s", rec.Code, rec.Header().Get("Retry-After"), rec.Body)
	}
	if rec := get("tok-b", "192.0.2.1"); rec.Code != 200 {
		t.Fatalf("another token from the same address: %d", rec.Code)
	}
	if v := testutil.ToFloat64(s.m.rateLimited.WithLabelValues("token")); v != 3 {
		t.Fatalf("takt_api_rate_limited_total{by=token} = %v, want 3", v)
	}
	// The same unknown token twice: one query, then the negative cache.
	for range 2 {
		if rec := get("not-a-token", "192.0.2.3"); rec.Code != 401 {
			t.Fatalf("unknown token: %d", rec.Code)
		}
	}
	if v := testutil.ToFloat64(s.m.bogusHits); v != 1 {
		t.Fatalf("takt_api_unknown_token_cache_hits_total = %v, want 1", v)
	}
	// 10/s per address: a burst of 20 whatever the tokens, then 429 by address;
	// another address goes on.
	s, get = serve(-1, 10)
	codes = map[int]int{}
	for i := range 24 {
		codes[get([]string{"tok-b", "tok-read", "tok-manage"}[i%3], "192.0.2.2").Code]++
	}
	if codes[200] != 20 || codes[429] != 4 || !strings.Contains(get("tok-b", "192.0.2.2").Body.String(), "from this address") {
		t.Fatalf("24 quick requests from one address at 10/s: %v, want 20 answered and 4 refused by address", codes)
	}
	if rec := get("tok-b", "192.0.2.9"); rec.Code != 200 {
		t.Fatalf("another address: %d", rec.Code)
	}
	if v := testutil.ToFloat64(s.m.rateLimited.WithLabelValues("address")); v != 5 {
		t.Fatalf("takt_api_rate_limited_total{by=address} = %v, want 5", v)
	}
}
