package service

import (
	"context"
	"io"
	"log/slog"
	"math"
	"math/rand/v2"
	"testing"
	"time"

	"github.com/jackc/pgx/v5/pgxpool"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"
	"github.com/segmentio/kafka-go"

	"takt.dev/plant/store"
	"takt.dev/schemas"
	"takt.dev/testkit"
)

func TestMain(m *testing.M) { testkit.Main(m) }

var h8 = time.Date(2026, 11, 24, 8, 0, 0, 0, time.UTC)

// script is one equipment's hour, sampled every 10 s: running, a 10-minute breakdown
// at 08:20, running again; a uint16 total counter that starts at 65,000 (and wraps),
// +10 per running 10 s; a scrap counter of one part in a hundred.
func script(from, to time.Time, stopFrom, stopTo time.Time, seq *uint64) []*schemas.Envelope {
	var envs []*schemas.Envelope
	var cur *schemas.Envelope
	made := 0
	if from.After(h8) { // continuing the first hour's counters
		made = 2990 + 10
	}
	for t := from; t.Before(to); t = t.Add(10 * time.Second) {
		if cur == nil || len(cur.Samples) >= 30 {
			cur = &schemas.Envelope{Version: 1, Tenant: "acme", Site: "lyon", Area: "pack", Line: "line-1", Equipment: "filler-1", Agent: "gw"}
			envs = append(envs, cur)
		}
		state, reason := schemas.StateRunning, uint32(0)
		if !t.Before(stopFrom) && t.Before(stopTo) {
			state, reason = schemas.StateStoppedUnplanned, 101
		}
		add := func(s schemas.Sample) {
			*seq++
			s.Seq, s.TS, s.Quality, s.Kind = *seq, t, schemas.QualityGood, schemas.NumberValue
			cur.Samples = append(cur.Samples, s)
		}
		add(schemas.Sample{Tag: "state", Role: schemas.RoleState, State: state, Reason: reason, Value: float64(state)})
		add(schemas.Sample{Tag: "count_total", Role: schemas.RoleCounter, Counter: schemas.CounterTotal, Wrap: 65536, Value: float64((65000 + made) % 65536)})
		add(schemas.Sample{Tag: "count_scrap", Role: schemas.RoleCounter, Counter: schemas.CounterScrap, Wrap: 65536, Value: float64(made / 100)})
		if state == schemas.StateRunning {
			made += 10
		}
	}
	return envs
}

func produce(t *testing.T, brokers []string, envs []*schemas.Envelope) {
	t.Helper()
	w := &kafka.Writer{Addr: kafka.TCP(brokers...), Topic: schemas.KafkaEvents, Balancer: &kafka.Hash{},
		RequiredAcks: kafka.RequireAll, BatchTimeout: 2 * time.Millisecond}
	defer w.Close()
	produceWith(t, w, envs)
}

// produceWith writes envs, keyed by equipment, with w (its topic, its transport).
func produceWith(t *testing.T, w *kafka.Writer, envs []*schemas.Envelope) {
	t.Helper()
	var msgs []kafka.Message
	for _, e := range envs {
		b, err := schemas.Encode(e)
		if err != nil {
			t.Fatal(err)
		}
		msgs = append(msgs, kafka.Message{Key: e.Path().Key(), Value: b})
	}
	if err := w.WriteMessages(context.Background(), msgs...); err != nil {
		t.Fatal(err)
	}
}

func register(t *testing.T, pool *pgxpool.Pool) {
	t.Helper()
	_, err := pool.Exec(context.Background(), `
WITH tn AS (INSERT INTO tenant VALUES ('acme', 'Acme') RETURNING tenant_id),
s AS (INSERT INTO site (tenant_id, code, name, time_zone) SELECT tenant_id, 'lyon', 'Lyon', 'Europe/Paris' FROM tn RETURNING tenant_id, id),
a AS (INSERT INTO area (tenant_id, site_id, code, name) SELECT tenant_id, id, 'pack', 'Pack' FROM s RETURNING tenant_id, id),
l AS (INSERT INTO line (tenant_id, area_id, code, name) SELECT tenant_id, id, 'line-1', 'L1' FROM a RETURNING tenant_id, id),
w AS (INSERT INTO work_center (tenant_id, line_id, code, name) SELECT tenant_id, id, 'wc', 'WC' FROM l RETURNING tenant_id, id)
INSERT INTO equipment (tenant_id, work_center_id, code, name, ideal_cycle_time_s, micro_stop_threshold_s)
SELECT tenant_id, id, 'filler-1', 'Filler', 1.0, 120 FROM w`)
	if err != nil {
		t.Fatal(err)
	}
}

func run(t *testing.T, pool *pgxpool.Pool, brokers []string, group string) context.CancelFunc {
	t.Helper()
	return runConfig(t, pool, Config{KafkaBrokers: brokers, Group: group})
}

// runConfig runs the service with cfg (fast recomputation and linger added) until
// the returned stop or the test's end.
func runConfig(t *testing.T, pool *pgxpool.Pool, cfg Config) context.CancelFunc {
	t.Helper()
	cfg.RecomputeEvery, cfg.Linger = 100*time.Millisecond, 50*time.Millisecond
	svc, err := New(cfg, &store.Store{Pool: pool}, slog.New(slog.NewTextHandler(io.Discard, nil)), prometheus.NewRegistry(),
		func() time.Time { return h8.Add(48 * time.Hour) })
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- svc.Run(ctx) }()
	stop := func() {
		cancel()
		if err := <-done; err != nil {
			t.Errorf("Run: %v", err)
		}
	}
	t.Cleanup(func() {
		select {
		case <-ctx.Done():
		default:
			stop()
		}
	})
	return stop
}

type row struct {
	planned, run, breakdown, unknown float64
	total, good                      int64
	a, p, q, oee                     *float64
}

func window(t *testing.T, pool *pgxpool.Pool, gran string, start time.Time, want func(row) bool) row {
	t.Helper()
	deadline := time.Now().Add(30 * time.Second)
	var r row
	for {
		err := pool.QueryRow(context.Background(), `SELECT planned_s, run_s, breakdown_s, unknown_s, total_count, good_count,
			availability, performance, quality, oee FROM oee_window
			WHERE tenant_id = 'acme' AND equipment = 'filler-1' AND granularity = $1 AND starts_at = $2`, gran, start).
			Scan(&r.planned, &r.run, &r.breakdown, &r.unknown, &r.total, &r.good, &r.a, &r.p, &r.q, &r.oee)
		if err == nil && want(r) {
			return r
		}
		if time.Now().After(deadline) {
			t.Fatalf("%s window at %s: %+v (%v)", gran, start, r, err)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

func near(t *testing.T, name string, got *float64, want float64) {
	t.Helper()
	if got == nil || math.Abs(*got-want) > 1e-9 {
		t.Fatalf("%s = %v, want %.9f", name, got, want)
	}
}

func snapshot(t *testing.T, pool *pgxpool.Pool) string {
	t.Helper()
	var s string
	err := pool.QueryRow(context.Background(), `SELECT coalesce(string_agg(format('%s %s %s %s %s %s %s %s %s', equipment, granularity,
		starts_at, planned_s, run_s, breakdown_s, total_count, good_count, oee), E'\n' ORDER BY granularity, starts_at), '') FROM oee_window`).Scan(&s)
	if err != nil {
		t.Fatal(err)
	}
	return s
}

func TestWindowsFromEventsLateDataAndReplay(t *testing.T) {
	pool := testkit.NewDatabase(t).Pool(t)
	register(t, pool)
	k := testkit.Kafka(t)
	var seq uint64
	envs := script(h8, h8.Add(time.Hour), h8.Add(20*time.Minute), h8.Add(30*time.Minute), &seq)
	rand.New(rand.NewPCG(1, 1)).Shuffle(len(envs), func(i, j int) { envs[i], envs[j] = envs[j], envs[i] }) // out of order
	produce(t, k.Brokers(), envs)
	stop := run(t, pool, k.Brokers(), "agg")

	// 08:00-09:00: 50 min running, a 10-min breakdown; 2,990 parts counted in the
	// hour (the last 10 s show at 09:00), 29 scrap, across a 16-bit wrap.
	r := window(t, pool, "hour", h8, func(r row) bool { return r.total == 2990 })
	if r.planned != 3600 || r.run != 3000 || r.breakdown != 600 || r.unknown != 0 || r.good != 2961 {
		t.Fatalf("hour 08: %+v", r)
	}
	near(t, "availability", r.a, 3000.0/3600)
	near(t, "performance", r.p, 2990.0/3000)
	near(t, "quality", r.q, 2961.0/2990)
	near(t, "OEE", r.oee, 3000.0/3600*2990.0/3000*2961.0/2990)

	// Late data: 09:00-09:10 arrives after the hour was computed.
	produce(t, k.Brokers(), script(h8.Add(time.Hour), h8.Add(70*time.Minute), h8, h8, &seq))
	// 09:00-10:00: the last state (RUNNING at 09:09:50) holds until the next one, as
	// a source reporting by exception means it; the parts of 08:59:50-09:00 show in
	// the 09:00 reading.
	r9 := window(t, pool, "hour", h8.Add(time.Hour), func(r row) bool { return r.run == 3600 && r.total == 600 })
	if r9.planned != 3600 || r9.unknown != 0 {
		t.Fatalf("hour 09: %+v", r9)
	}
	// The local (Europe/Paris) day starts at 23:00 UTC the day before: unknown until
	// the first observation at 08:00 UTC, then known to the day's end at 23:00 UTC.
	day := window(t, pool, "day", time.Date(2026, 11, 23, 23, 0, 0, 0, time.UTC), func(r row) bool { return r.total == 3590 && r.run == 15*3600-600 })
	if day.breakdown != 600 || day.unknown != 9*3600 {
		t.Fatalf("day: %+v", day)
	}
	time.Sleep(300 * time.Millisecond)
	stop()
	before := snapshot(t, pool)

	// Replaying the topic from the start (a new group) gives the same table.
	if _, err := pool.Exec(context.Background(), `DELETE FROM oee_window`); err != nil {
		t.Fatal(err)
	}
	stop = run(t, pool, k.Brokers(), "replay")
	deadline := time.Now().Add(30 * time.Second)
	for snapshot(t, pool) != before {
		if time.Now().After(deadline) {
			t.Fatalf("after a replay the table is\n%s\nwas\n%s", snapshot(t, pool), before)
		}
		time.Sleep(100 * time.Millisecond)
	}
	stop()
	if n := len(before); n == 0 {
		t.Fatal("empty table")
	}

}

// Events of a tenant nobody registered are kept but give no windows, and say so.
func TestUnknownTenantIsCounted(t *testing.T) {
	pool := testkit.NewDatabase(t).Pool(t)
	k := testkit.Kafka(t)
	var seq uint64
	envs := script(h8, h8.Add(time.Minute), h8, h8, &seq)
	for _, e := range envs {
		e.Tenant = "ghost"
	}
	produce(t, k.Brokers(), envs)
	reg := prometheus.NewRegistry()
	svc, err := New(Config{KafkaBrokers: k.Brokers(), RecomputeEvery: 50 * time.Millisecond, Linger: 20 * time.Millisecond},
		&store.Store{Pool: pool}, slog.New(slog.NewTextHandler(io.Discard, nil)), reg, nil)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- svc.Run(ctx) }()
	defer func() { cancel(); <-done }()
	deadline := time.Now().Add(30 * time.Second)
	for testutil.ToFloat64(svc.m.unknownTenant) == 0 {
		if time.Now().After(deadline) {
			t.Fatal("takt_aggregator_unknown_tenant_days_total stayed 0")
		}
		time.Sleep(50 * time.Millisecond)
	}
	var windows, observations int
	pool.QueryRow(context.Background(), `SELECT (SELECT count(*) FROM oee_window), (SELECT count(*) FROM state_observation WHERE tenant_id = 'ghost')`).Scan(&windows, &observations)
	if windows != 0 || observations != 6 {
		t.Fatalf("%d windows, %d observations kept; want 0 and 6", windows, observations)
	}
}
