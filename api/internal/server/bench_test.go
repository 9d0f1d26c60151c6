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
	"sort"
	"sync"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"takt.dev/testkit"
)

var benchAPI struct {
	once                                              sync.Once
	dayRPS, dayP99, lineRPS, lineP99, dayP50, lineP50 float64
}

// BenchmarkAPI loads 100 equipment (10 lines of 10) × 30 days of hourly and daily
// windows, then runs 64 concurrent clients for 10 s per query against the API (in
// the same process, over loopback HTTP): the 24 hourly buckets of one equipment's
// day, and the 30 daily buckets of a line. It reports requests per second and the
// latency percentiles.
func BenchmarkAPI(b *testing.B) {
	benchAPI.once.Do(func() { measureAPI(b) })
	for b.Loop() {
	}
	b.ReportMetric(benchAPI.dayRPS, "api_oee_day_rps=req/s")
	b.ReportMetric(benchAPI.dayP50, "api_oee_day_p50_ms=ms")
	b.ReportMetric(benchAPI.dayP99, "api_oee_day_p99_ms=ms")
	b.ReportMetric(benchAPI.lineRPS, "api_oee_line30d_rps=req/s")
	b.ReportMetric(benchAPI.lineP50, "api_oee_line30d_p50_ms=ms")
	b.ReportMetric(benchAPI.lineP99, "api_oee_line30d_p99_ms=ms")
}

func measureAPI(b *testing.B) {
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
	s := New(Deps{Primary: pool, Log: slog.New(slog.NewTextHandler(io.Discard, nil)), Registry: prometheus.NewRegistry(), PII: testkit.PIIKeyring(b),
		TokenRate: -1, AddressRate: -1}) // a ceiling, not a limit: one token from one address offers it all
	ts := httptest.NewServer(s)
	defer ts.Close()
	client := &http.Client{Transport: &http.Transport{MaxIdleConnsPerHost: 128}}

	load := func(path func(*rand.Rand) string) (rps, p50, p99 float64) {
		const clients = 64
		var mu sync.Mutex
		var lat []time.Duration
		var wg sync.WaitGroup
		stop := time.Now().Add(10 * time.Second)
		began := time.Now()
		for c := range clients {
			wg.Add(1)
			go func() {
				defer wg.Done()
				rng := rand.New(rand.NewPCG(uint64(c), 1))
				var mine []time.Duration
				for time.Now().Before(stop) {
					req, _ := http.NewRequest("GET", ts.URL+path(rng), nil)
					req.Header.Set("Authorization", "Bearer tok-bench")
					t0 := time.Now()
					resp, err := client.Do(req)
					if err != nil {
						b.Error(err)
						return
					}
					io.Copy(io.Discard, resp.Body)
					resp.Body.Close()
					if resp.StatusCode != 200 {
						b.Errorf("status %d", resp.StatusCode)
						return
					}
					mine = append(mine, time.Since(t0))
				}
				mu.Lock()
				lat = append(lat, mine...)
				mu.Unlock()
			}()
		}
		wg.Wait()
		el := time.Since(began).Seconds()
		sort.Slice(lat, func(i, j int) bool { return lat[i] < lat[j] })
		if len(lat) == 0 {
			b.Fatal("no requests completed")
		}
		ms := func(q float64) float64 { return float64(lat[int(q*float64(len(lat)-1))].Microseconds()) / 1000 }
		return float64(len(lat)) / el, ms(0.5), ms(0.99)
	}
	benchAPI.dayRPS, benchAPI.dayP50, benchAPI.dayP99 = load(func(rng *rand.Rand) string {
		d := start.AddDate(0, 0, rng.IntN(30))
		return fmt.Sprintf("/api/v1/equipment/eq-%d-%d/oee?bucket=hour&from=%s&to=%s", rng.IntN(10), rng.IntN(10),
			d.Format(time.RFC3339), d.Add(24*time.Hour).Format(time.RFC3339))
	})
	benchAPI.lineRPS, benchAPI.lineP50, benchAPI.lineP99 = load(func(rng *rand.Rand) string {
		return fmt.Sprintf("/api/v1/lines/line-%d/oee?bucket=day&from=%s&to=%s", rng.IntN(10),
			start.Format(time.RFC3339), start.AddDate(0, 0, 30).Format(time.RFC3339))
	})
}
