package service

import (
	"context"
	"encoding/json"
	"io"
	"log/slog"
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

// one is an envelope of filler-1's single sample s, numbered from seq.
func one(seq *uint64, s schemas.Sample) *schemas.Envelope {
	*seq++
	s.Seq = *seq
	if s.Quality == 0 {
		s.Quality = schemas.QualityGood
	}
	return &schemas.Envelope{Version: 1, Tenant: "acme", Site: "lyon", Area: "pack", Line: "line-1", Equipment: "filler-1", Agent: "gw",
		Samples: []schemas.Sample{s}}
}

// changes is one equipment's events sent only when something changes, as OPC UA
// subscriptions and Sparkplug B report: a state, and a total counter reading.
func changes(eq string, seq *uint64, at ...any) []*schemas.Envelope {
	var out []*schemas.Envelope
	for i := 0; i < len(at); i += 2 {
		ts := at[i].(time.Time)
		env := &schemas.Envelope{Version: 1, Tenant: "acme", Site: "lyon", Area: "pack", Line: "line-1", Equipment: eq, Agent: "gw"}
		*seq++
		switch v := at[i+1].(type) {
		case schemas.StateCategory:
			env.Samples = []schemas.Sample{{Seq: *seq, Tag: "state", Role: schemas.RoleState, State: v, Value: float64(v), TS: ts,
				Kind: schemas.NumberValue, Quality: schemas.QualityGood}}
		case int:
			env.Samples = []schemas.Sample{{Seq: *seq, Tag: "count_total", Role: schemas.RoleCounter, Counter: schemas.CounterTotal,
				Value: float64(v), TS: ts, Kind: schemas.NumberValue, Quality: schemas.QualityGood}}
		}
		out = append(out, env)
	}
	return out
}

func produceStatus(t *testing.T, brokers []string, sts ...schemas.AgentStatus) {
	t.Helper()
	w := &kafka.Writer{Addr: kafka.TCP(brokers...), Topic: schemas.KafkaStatus, Balancer: &kafka.Hash{},
		RequiredAcks: kafka.RequireAll, BatchTimeout: 2 * time.Millisecond}
	defer w.Close()
	for _, st := range sts {
		b, _ := json.Marshal(st)
		if err := w.WriteMessages(context.Background(), kafka.Message{Key: []byte(st.Tenant + "/" + st.Agent), Value: b}); err != nil {
			t.Fatal(err)
		}
	}
}

func hourOf(t *testing.T, pool *pgxpool.Pool, eq string, start time.Time, want func(row) bool) row {
	t.Helper()
	deadline := time.Now().Add(30 * time.Second)
	var r row
	for {
		err := pool.QueryRow(context.Background(), `SELECT planned_s, run_s, breakdown_s, unknown_s, total_count, good_count,
			availability, performance, quality, oee FROM oee_window
			WHERE tenant_id = 'acme' AND equipment = $1 AND granularity = 'hour' AND starts_at = $2`, eq, start).
			Scan(&r.planned, &r.run, &r.breakdown, &r.unknown, &r.total, &r.good, &r.a, &r.p, &r.q, &r.oee)
		if err == nil && want(r) {
			return r
		}
		if time.Now().After(deadline) {
			t.Fatalf("%s hour %s: %+v (%v)", eq, start, r, err)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// States sent only at changes hold until the next one; an agent's death (its last
// will) ends knowledge until its next state; coming back with the same incarnation
// (it lived through a network outage) withdraws the gap.
func TestStatesByExceptionAndAgentDeath(t *testing.T) {
	pool := testkit.NewDatabase(t).Pool(t)
	register(t, pool)
	k := testkit.Kafka(t)
	var seq uint64
	produce(t, k.Brokers(), changes("filler-1", &seq,
		h8, schemas.StateRunning, h8, 0,
		h8.Add(59*time.Minute), 3540, h8.Add(time.Hour), schemas.StateStoppedUnplanned,
		h8.Add(90*time.Minute), schemas.StateRunning,
		h8.Add(3*time.Hour), schemas.StateRunning, // after the agent came back
	))
	produceStatus(t, k.Brokers(), schemas.AgentStatus{Version: 1, Tenant: "acme", Agent: "gw", State: schemas.AgentOffline, Will: true,
		Incarnation: "a1", TS: h8.Add(-time.Hour), ReceivedAt: h8.Add(2 * time.Hour), Equipment: []string{"filler-1"}})
	run(t, pool, k.Brokers(), "agg")

	r8 := hourOf(t, pool, "filler-1", h8, func(r row) bool { return r.total == 3540 })
	if r8.run != 3600 || r8.unknown != 0 {
		t.Fatalf("08:00, one RUNNING: %+v", r8)
	}
	near(t, "availability 08", r8.a, 1)
	near(t, "performance 08", r8.p, 3540.0/3600)
	r9 := hourOf(t, pool, "filler-1", h8.Add(time.Hour), func(r row) bool { return r.breakdown == 1800 })
	if r9.run != 1800 || r9.unknown != 0 {
		t.Fatalf("09:00, a 30-minute breakdown sent once: %+v", r9)
	}
	r10 := hourOf(t, pool, "filler-1", h8.Add(2*time.Hour), func(r row) bool { return r.unknown == 3600 })
	if r10.run != 0 || r10.planned != 0 || r10.a != nil {
		t.Fatalf("10:00, agent offline: %+v", r10)
	}
	hourOf(t, pool, "filler-1", h8.Add(5*time.Hour), func(r row) bool { return r.run == 3600 })

	// The same incarnation comes back: it was only the network; its buffer carried
	// everything, so the hour is known again.
	produceStatus(t, k.Brokers(), schemas.AgentStatus{Version: 1, Tenant: "acme", Agent: "gw", State: schemas.AgentOnline,
		Incarnation: "a1", TS: h8.Add(2*time.Hour + 30*time.Minute), Equipment: []string{"filler-1"}})
	hourOf(t, pool, "filler-1", h8.Add(2*time.Hour), func(r row) bool { return r.unknown == 0 && r.run == 3600 })

	// A power loss: no will in time, the next run's birth says how far the last one
	// got (10:40 by the PLC's clock), and its first state comes at 11:00.
	produceStatus(t, k.Brokers(), schemas.AgentStatus{Version: 1, Tenant: "acme", Agent: "gw", State: schemas.AgentOnline,
		Incarnation: "a2", TS: h8.Add(3 * time.Hour), Equipment: []string{"filler-1"},
		Previous: &schemas.PreviousRun{Incarnation: "a1", Until: h8.Add(2*time.Hour + 40*time.Minute)}})
	r10 = hourOf(t, pool, "filler-1", h8.Add(2*time.Hour), func(r row) bool { return r.unknown == 20*60 })
	if r10.run != 40*60 {
		t.Fatalf("10:00, power lost at 10:40: %+v", r10)
	}
}

// One bad equipment-day never stops the rest: counters that disagree are stored with
// an anomaly, and a day that cannot be computed is set aside with its error while
// other equipment's OEE keeps flowing.
func TestPoisonDaysDoNotStopOthers(t *testing.T) {
	pool := testkit.NewDatabase(t).Pool(t)
	register(t, pool)
	ctx := context.Background()
	// filler-2 sits at a site whose time zone cannot be loaded (forced past the
	// table's own check): its days fail.
	if _, err := pool.Exec(ctx, `ALTER TABLE site DROP CONSTRAINT site_time_zone_check`); err != nil {
		t.Fatal(err)
	}
	if _, err := pool.Exec(ctx, `
WITH s AS (INSERT INTO site (tenant_id, code, name, time_zone) VALUES ('acme', 'mars', 'Mars', 'Mars/Olympus_Mons') RETURNING tenant_id, id),
a AS (INSERT INTO area (tenant_id, site_id, code, name) SELECT tenant_id, id, 'pack', 'Pack' FROM s RETURNING tenant_id, id),
l AS (INSERT INTO line (tenant_id, area_id, code, name) SELECT tenant_id, id, 'line-9', 'L9' FROM a RETURNING tenant_id, id),
w AS (INSERT INTO work_center (tenant_id, line_id, code, name) SELECT tenant_id, id, 'wc', 'WC' FROM l RETURNING tenant_id, id)
INSERT INTO equipment (tenant_id, work_center_id, code, name, ideal_cycle_time_s) SELECT tenant_id, id, 'filler-2', 'F2', 1 FROM w`); err != nil {
		t.Fatal(err)
	}
	k := testkit.Kafka(t)
	var seq uint64
	good := func(ts time.Time, v int) *schemas.Envelope {
		return one(&seq, schemas.Sample{Tag: "count_good", Role: schemas.RoleCounter, Counter: schemas.CounterGood, Value: float64(v), TS: ts, Kind: schemas.NumberValue})
	}
	// filler-2 first: its failing day is the oldest mark, and must not block filler-1.
	produce(t, k.Brokers(), changes("filler-2", &seq, h8, schemas.StateRunning))
	produce(t, k.Brokers(), append(changes("filler-1", &seq, h8, schemas.StateRunning), good(h8, 0), good(h8.Add(time.Minute), 50)))

	reg := prometheus.NewRegistry()
	st := &store.Store{Pool: pool}
	svc, err := New(Config{KafkaBrokers: k.Brokers(), Group: "agg", RecomputeEvery: 50 * time.Millisecond, Linger: 20 * time.Millisecond},
		st, slog.New(slog.NewTextHandler(io.Discard, nil)), reg, func() time.Time { return h8.Add(48 * time.Hour) })
	if err != nil {
		t.Fatal(err)
	}
	rctx, cancel := context.WithCancel(ctx)
	done := make(chan error, 1)
	go func() { done <- svc.Run(rctx) }()
	defer func() { cancel(); <-done }()

	r := hourOf(t, pool, "filler-1", h8, func(r row) bool { return r.good == 50 })
	if r.total != 0 || r.q != nil || r.oee != nil {
		t.Fatalf("good-only counter: %+v", r)
	}
	var anomalies []string
	pool.QueryRow(ctx, `SELECT anomalies FROM oee_window WHERE equipment = 'filler-1' AND granularity = 'hour' AND starts_at = $1`, h8).Scan(&anomalies)
	if len(anomalies) != 1 || anomalies[0] != store.AnomalyGoodAboveTotal {
		t.Fatalf("anomalies %v", anomalies)
	}
	if v := testutil.ToFloat64(svc.m.anomalies.WithLabelValues(store.AnomalyGoodAboveTotal)); v < 1 {
		t.Fatalf("takt_aggregator_anomalous_days_total{anomaly=good_above_total} = %v", v)
	}
	deadline := time.Now().Add(30 * time.Second)
	for testutil.ToFloat64(svc.m.failures) == 0 {
		if time.Now().After(deadline) {
			t.Fatal("takt_aggregator_recompute_failures_total stayed 0")
		}
		time.Sleep(50 * time.Millisecond)
	}
	fs, err := store.Failures(ctx, pool, 10)
	if err != nil || len(fs) == 0 || fs[0].Equipment != "filler-2" || fs[0].Attempts < 1 || fs[0].LastError == "" {
		t.Fatalf("failures %+v %v", fs, err)
	}
	// New data for filler-1 keeps flowing while filler-2's day waits for its retry.
	produce(t, k.Brokers(), changes("filler-1", &seq, h8.Add(30*time.Minute), schemas.StateStoppedUnplanned))
	hourOf(t, pool, "filler-1", h8, func(r row) bool { return r.breakdown == 1800 })
	t.Logf("set aside: %s (attempt %d): %s", fs[0].Day, fs[0].Attempts, fs[0].LastError)
}

// A shift with two products of different ideal cycle times and a changeover between
// their runs: each part takes its product's ideal cycle time, the time between the
// runs is setup, and the stops become downtime events.
func TestTwoProductsWithAChangeover(t *testing.T) {
	pool := testkit.NewDatabase(t).Pool(t)
	register(t, pool) // filler-1, ideal cycle 1 s
	ctx := context.Background()
	addProducts(t, pool)
	for _, r := range []store.ProductionRun{
		{Product: "cola", Start: h8, End: ptr(h8.Add(30 * time.Minute))},
		{Product: "juice", Start: h8.Add(40 * time.Minute), End: ptr(h8.Add(3 * time.Hour))},
	} {
		if _, err := store.AddRun(ctx, pool, "acme", "filler-1", r); err != nil {
			t.Fatal(err)
		}
	}
	k := testkit.Kafka(t)
	var seq uint64
	// Running the whole hour by the machine's account, one breakdown after it; 3,000
	// cola in the first half hour, 600 juice after the changeover.
	produce(t, k.Brokers(), changes("filler-1", &seq,
		h8, schemas.StateRunning, h8, 0, h8.Add(29*time.Minute), 3000, h8.Add(59*time.Minute), 3600,
		h8.Add(time.Hour), schemas.StateStoppedUnplanned, h8.Add(75*time.Minute), schemas.StateRunning))
	run(t, pool, k.Brokers(), "agg")
	r := hourOf(t, pool, "filler-1", h8, func(r row) bool { return r.total == 3600 })
	var setup, idealRun float64
	pool.QueryRow(ctx, `SELECT setup_s, ideal_run_s FROM oee_window WHERE equipment = 'filler-1' AND granularity = 'hour' AND starts_at = $1`, h8).Scan(&setup, &idealRun)
	if setup != 600 || r.run != 3000 || r.planned != 3600 || idealRun != 3000*0.5+600*2 {
		t.Fatalf("08:00: setup %v run %v planned %v ideal %v", setup, r.run, r.planned, idealRun)
	}
	near(t, "performance", r.p, (1500.0+1200)/3000)
	deadline := time.Now().Add(10 * time.Second)
	for {
		var events []string
		rows, _ := pool.Query(ctx, `SELECT category || ' ' || to_char(start_time AT TIME ZONE 'UTC', 'HH24:MI') || '-' || coalesce(to_char(end_time AT TIME ZONE 'UTC', 'HH24:MI'), '')
			FROM downtime WHERE source = 'derived' ORDER BY start_time`)
		for rows.Next() {
			var s string
			rows.Scan(&s)
			events = append(events, s)
		}
		if len(events) == 1 && events[0] == "3 09:00-09:15" {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("downtime events %v, want the breakdown 09:00-09:15", events)
		}
		time.Sleep(100 * time.Millisecond)
	}
}

func ptr[T any](v T) *T { return &v }

// Runs from the line itself: product samples (a recipe the PLC names) make the runs
// when none was entered, with the time without a product as changeover.
func TestRunsFromProductSamples(t *testing.T) {
	pool := testkit.NewDatabase(t).Pool(t)
	register(t, pool) // filler-1, ideal cycle 1 s
	ctx := context.Background()
	addProducts(t, pool)
	k := testkit.Kafka(t)
	var seq uint64
	product := func(ts time.Time, code string) *schemas.Envelope {
		return one(&seq, schemas.Sample{Tag: "recipe", Role: schemas.RoleProduct, TS: ts, Kind: schemas.TextValue, Text: code})
	}
	envs := changes("filler-1", &seq, h8, schemas.StateRunning, h8, 0, h8.Add(29*time.Minute), 3000, h8.Add(59*time.Minute), 3600)
	envs = append(envs, product(h8, "cola"), product(h8.Add(30*time.Minute), ""), product(h8.Add(40*time.Minute), "juice"))
	produce(t, k.Brokers(), envs)
	run(t, pool, k.Brokers(), "agg")
	r := hourOf(t, pool, "filler-1", h8, func(r row) bool { return r.total == 3600 && r.run == 3000 })
	var setup, idealRun float64
	pool.QueryRow(ctx, `SELECT setup_s, ideal_run_s FROM oee_window WHERE equipment = 'filler-1' AND granularity = 'hour' AND starts_at = $1`, h8).Scan(&setup, &idealRun)
	if setup != 600 || idealRun != 3000*0.5+600*2 {
		t.Fatalf("08:00: setup %v ideal %v (%+v)", setup, idealRun, r)
	}
	near(t, "performance", r.p, 2700.0/3000)
}

// addProducts registers cola (ideal cycle 0.5 s) and juice (2 s) for acme.
func addProducts(t *testing.T, pool *pgxpool.Pool) {
	t.Helper()
	if _, err := pool.Exec(context.Background(), `INSERT INTO product (tenant_id, code, name, ideal_cycle_time_s) VALUES ('acme', 'cola', 'Cola', 0.5), ('acme', 'juice', 'Juice', 2)`); err != nil {
		t.Fatal(err)
	}
}
