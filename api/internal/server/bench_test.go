package server

import (
	"context"
	"crypto/sha256"
	"fmt"
	"io"
	"log/slog"
	"math/rand/v2"
	"net/http"
	"net/http/httptest"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"

	"takt.dev/testkit"
)

var benchAPI struct {
	once sync.Once
	r    map[string]float64
}

// Each query is measured three times: its ceiling without and with the answer
// cache, with benchClients clients sending the next request as soon as the last is
// answered, for benchWindow; then its latency with the cache at the goal
// rate (5,000 and 2,000 requests/s), or at 80 % of the ceiling when that is lower:
// requests sent on a fixed schedule whether or not earlier ones were answered (an
// open loop: a slow answer delays no later request, and each latency counts from
// when its request was due, so queueing is not hidden). The open loop starts a
// goroutine per request in this process: far above the goal rates it measures the
// load client as much as the API, so it is not run at 80 % of a ceiling above them.
const (
	benchClients = 32
	benchWindow  = 8 * time.Second
	benchShare   = 0.8
)

// BenchmarkAPI loads 100 equipment (10 lines of 10) × 30 days of hourly and daily
// windows and measures the API (in the benchmark's process, over loopback HTTP, with
// PostgreSQL on the same two cores) on two queries: the 24 hourly buckets of one
// equipment's day (a random one of the 3,000), and the 30 daily buckets of a line.
// While it runs, the last day's windows of every equipment are rewritten every 2 s,
// as the aggregator does (recompute_every, 2 s by default) when every equipment has
// new data: each rewrite drops the answers that hold that day (every line's 30 days,
// a thirtieth of the days). It reports
// each query's ceiling in requests per second with the answer cache (as takt-api
// runs by default) and without it, the share of answers the cache served, the p50
// and p99 latency with the cache at the rate named by *_latency_rps (and, of that
// run, the share the cache served, *_latency_hit_ratio, and the p99 of the answers
// read from PostgreSQL, *_miss_p99_ms, told apart by Cache-Status), the process's
// CPU per 1,000 requests at the cached ceiling and its peak RSS (the load client's
// included).
func BenchmarkAPI(b *testing.B) {
	benchAPI.once.Do(func() { benchAPI.r = measureAPI(b) })
	for b.Loop() {
	}
	for _, name := range []string{
		"api_oee_day_rps=req/s", "api_oee_day_latency_rps=req/s", "api_oee_day_p50_ms=ms", "api_oee_day_p99_ms=ms",
		"api_oee_day_latency_hit_ratio=ratio", "api_oee_day_miss_p99_ms=ms", "api_oee_day_cpu_s_per_1k_requests=s",
		"api_oee_line30d_rps=req/s", "api_oee_line30d_latency_rps=req/s", "api_oee_line30d_p50_ms=ms", "api_oee_line30d_p99_ms=ms",
		"api_oee_line30d_latency_hit_ratio=ratio", "api_oee_line30d_miss_p99_ms=ms", "api_oee_line30d_cpu_s_per_1k_requests=s",
		"api_oee_day_hit_ratio=ratio", "api_oee_day_uncached_rps=req/s", "api_oee_line30d_hit_ratio=ratio", "api_oee_line30d_uncached_rps=req/s",
		"api_peak_rss_mib=MiB",
	} {
		b.ReportMetric(benchAPI.r[name[:strings.IndexByte(name, '=')]], name)
	}
}

func measureAPI(b *testing.B) map[string]float64 {
	ctx := context.Background()
	pool := testkit.NewDatabase(b).Pool(b)
	start := time.Date(2026, 10, 1, 0, 0, 0, 0, time.UTC)
	_, err := pool.Exec(ctx, `
WITH tn AS (INSERT INTO tenant VALUES ('bench', 'Bench') RETURNING tenant_id),
s AS (INSERT INTO site (tenant_id, code, name, time_zone) SELECT tenant_id, 'plant', 'Plant', 'UTC' FROM tn RETURNING tenant_id, id),
a AS (INSERT INTO area (tenant_id, site_id, code, name) SELECT tenant_id, id, 'area', 'Area' FROM s RETURNING tenant_id, id),
l AS (INSERT INTO line (tenant_id, area_id, code, name) SELECT tenant_id, id, 'line-' || g, 'Line' FROM a, generate_series(0, 9) g RETURNING tenant_id, id, code),
w AS (INSERT INTO work_center (tenant_id, line_id, code, name) SELECT tenant_id, id, 'wc', 'WC' FROM l RETURNING tenant_id, id, line_id)
INSERT INTO equipment (tenant_id, work_center_id, code, name, ideal_cycle_time_s)
SELECT w.tenant_id, w.id, 'eq-' || substr(l.code, 6) || '-' || g, 'Eq', 1.0 FROM w JOIN l ON l.id = w.line_id, generate_series(0, 9) g`)
	if err != nil {
		b.Fatal(err)
	}
	for _, g := range []struct {
		name string
		step time.Duration
		n    int
	}{{"hour", time.Hour, 30 * 24}, {"day", 24 * time.Hour, 30}} {
		_, err := pool.Exec(ctx, `INSERT INTO oee_window (tenant_id, equipment, granularity, starts_at, ends_at, planned_s, run_s,
			breakdown_s, ideal_run_s, total_count, good_count, scrap_count, availability, performance, quality, oee)
			SELECT 'bench', e.code, $1, $2::timestamptz + i * $3::interval, $2::timestamptz + (i + 1) * $3::interval,
				p, p * 0.9, p * 0.1, p * 0.8, (p * 0.8)::bigint, (p * 0.78)::bigint, (p * 0.8)::bigint - (p * 0.78)::bigint,
				0.9, 0.8 / 0.9, 0.78 / 0.8, 0.78
			FROM equipment e, generate_series(0, $4 - 1) i, LATERAL (SELECT extract(epoch FROM $3::interval) AS p) x`,
			g.name, start, g.step, g.n)
		if err != nil {
			b.Fatal(err)
		}
	}
	if _, err := pool.Exec(ctx, `ANALYZE`); err != nil {
		b.Fatal(err)
	}
	sum := sha256.Sum256([]byte("tok-bench"))
	if _, err := pool.Exec(ctx, `INSERT INTO api_token (tenant_id, name, token_hash) VALUES ('bench', 'bench', $1)`, sum[:]); err != nil {
		b.Fatal(err)
	}
	// Two servers on the same database, with and without the answer cache.
	deps := Deps{Primary: pool, Log: slog.New(slog.NewTextHandler(io.Discard, nil)), Registry: prometheus.NewRegistry(), PII: testkit.PIIKeyring(b),
		TokenRate: -1, AddressRate: -1} // a ceiling, not a limit: one token from one address offers it all
	uncached := httptest.NewServer(New(deps))
	defer uncached.Close()
	deps.Registry, deps.AnswerCacheBytes = prometheus.NewRegistry(), DefaultAnswerCacheBytes
	s := New(deps)
	cached := httptest.NewServer(s)
	defer cached.Close()
	ctx, cancel := context.WithCancel(ctx)
	var bg sync.WaitGroup
	defer bg.Wait()
	defer cancel()
	bg.Go(func() { s.ListenForChanges(ctx) })
	for testutil.ToFloat64(s.answers.liveGauge) != 1 {
		time.Sleep(10 * time.Millisecond)
	}
	last := start.AddDate(0, 0, 29)
	bg.Go(func() { // today's windows, rewritten every recompute_every
		for t := time.NewTicker(2 * time.Second); ; {
			select {
			case <-ctx.Done():
				t.Stop()
				return
			case <-t.C:
			}
			if _, err := pool.Exec(ctx, `UPDATE oee_window SET computed_at = now() WHERE tenant_id = 'bench' AND starts_at >= $1`, last); err != nil && ctx.Err() == nil {
				b.Error(err)
			}
		}
	})
	ts := cached
	// At most 512 connections: past them a request waits for one, and its wait counts
	// in its latency (which runs from when it was due), but sockets stay bounded.
	client := &http.Client{Transport: &http.Transport{MaxIdleConnsPerHost: 512, MaxConnsPerHost: 512}}
	// get asks for path and says whether the cache answered (Cache-Status).
	get := func(path string) (hit bool, err error) {
		req, _ := http.NewRequest("GET", ts.URL+path, nil)
		req.Header.Set("Authorization", "Bearer tok-bench")
		resp, err := client.Do(req)
		if err != nil {
			return false, err
		}
		io.Copy(io.Discard, resp.Body)
		resp.Body.Close()
		if resp.StatusCode != 200 {
			return false, fmt.Errorf("%s: status %d", path, resp.StatusCode)
		}
		return resp.Header.Get("Cache-Status") == "takt-api; hit", nil
	}
	// ceiling: benchClients clients, each sending its next request when the last is
	// answered; requests answered per second.
	ceiling := func(path func(*rand.Rand) string) float64 {
		var done atomic.Int64
		var wg sync.WaitGroup
		stop := time.Now().Add(benchWindow)
		began := time.Now()
		for c := range benchClients {
			wg.Go(func() {
				rng := rand.New(rand.NewPCG(uint64(c), 1))
				for time.Now().Before(stop) {
					if _, err := get(path(rng)); err != nil {
						b.Error(err)
						return
					}
					done.Add(1)
				}
			})
		}
		wg.Wait()
		return float64(done.Load()) / time.Since(began).Seconds()
	}
	// latency: rps requests per second on a fixed schedule for benchWindow; each
	// latency from when its request was due to its answer.
	// latency: rps requests per second on a fixed schedule for benchWindow; each
	// latency from when its request was due to its answer. It returns the p50 and p99
	// of all, the share the cache answered, and the p99 of those it did not.
	latency := func(path func(*rand.Rand) string, rps float64) (p50, p99, hitShare, missP99 float64) {
		gap := time.Duration(float64(time.Second) / rps)
		n := int(benchWindow / gap)
		lat := make([]time.Duration, n)
		hits := make([]bool, n)
		rng := rand.New(rand.NewPCG(7, 7))
		paths := make([]string, n)
		for i := range paths {
			paths[i] = path(rng)
		}
		var wg sync.WaitGroup
		began := time.Now()
		for i := range n {
			due := began.Add(time.Duration(i) * gap)
			time.Sleep(time.Until(due))
			wg.Go(func() {
				var err error
				if hits[i], err = get(paths[i]); err != nil {
					b.Error(err)
				}
				lat[i] = time.Since(due)
			})
		}
		wg.Wait()
		var missed []time.Duration
		for i, h := range hits {
			if !h {
				missed = append(missed, lat[i])
			}
		}
		ms := func(l []time.Duration, q float64) float64 {
			if len(l) == 0 {
				return 0
			}
			slices.Sort(l)
			return float64(l[int(q*float64(len(l)-1))].Microseconds()) / 1000
		}
		return ms(lat, 0.5), ms(lat, 0.99), 1 - float64(len(missed))/float64(n), ms(missed, 0.99)
	}
	r := map[string]float64{}
	for _, q := range []struct {
		name string
		goal float64 // the requests per second for this query
		path func(*rand.Rand) string
	}{
		{"api_oee_day", 5000, func(rng *rand.Rand) string {
			d := start.AddDate(0, 0, rng.IntN(30))
			return fmt.Sprintf("/api/v1/equipment/eq-%d-%d/oee?bucket=hour&from=%s&to=%s", rng.IntN(10), rng.IntN(10),
				d.Format(time.RFC3339), d.Add(24*time.Hour).Format(time.RFC3339))
		}},
		{"api_oee_line30d", 2000, func(rng *rand.Rand) string {
			return fmt.Sprintf("/api/v1/lines/line-%d/oee?bucket=day&from=%s&to=%s", rng.IntN(10),
				start.Format(time.RFC3339), start.AddDate(0, 0, 30).Format(time.RFC3339))
		}},
	} {
		ts = uncached
		r[q.name+"_uncached_rps"] = ceiling(q.path)
		ts = cached
		hits, misses := s.answers.requests.WithLabelValues("hit"), s.answers.requests.WithLabelValues("miss")
		hits0, misses0 := testutil.ToFloat64(hits), testutil.ToFloat64(misses)
		cpu0 := processCPU(b)
		rps := ceiling(q.path)
		cpu := processCPU(b) - cpu0
		h, m := testutil.ToFloat64(hits)-hits0, testutil.ToFloat64(misses)-misses0
		r[q.name+"_hit_ratio"] = h / (h + m)
		r[q.name+"_rps"] = rps
		b.Logf("%s: %.0f req/s without the cache, %.0f with it (%.1f %% from it)", q.name, r[q.name+"_uncached_rps"], rps, 100*r[q.name+"_hit_ratio"])
		r[q.name+"_cpu_s_per_1k_requests"] = cpu / (rps * benchWindow.Seconds() / 1000)
		// The latency at the goal's rate, or at 80 % of the ceiling when that is lower.
		r[q.name+"_latency_rps"] = min(q.goal, benchShare*rps)
		r[q.name+"_p50_ms"], r[q.name+"_p99_ms"], r[q.name+"_latency_hit_ratio"], r[q.name+"_miss_p99_ms"] = latency(q.path, r[q.name+"_latency_rps"])
	}
	r["api_peak_rss_mib"] = peakRSSMiB(b)
	return r
}

// processCPU is the CPU time (user and system) this process has used, in seconds.
func processCPU(b *testing.B) float64 {
	var ru syscall.Rusage
	if err := syscall.Getrusage(syscall.RUSAGE_SELF, &ru); err != nil {
		b.Fatal(err)
	}
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano()).Seconds()
}

// peakRSSMiB is this process's peak resident memory.
func peakRSSMiB(b *testing.B) float64 {
	var ru syscall.Rusage
	if err := syscall.Getrusage(syscall.RUSAGE_SELF, &ru); err != nil {
		b.Fatal(err)
	}
	return float64(ru.Maxrss) / 1024 // KiB on Linux
}
