package main

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/segmentio/kafka-go"

	"takt.dev/schemas"
	"takt.dev/testkit"
)

// The aggregator's backlog: benchAggEquipment machines, each benchAggSeconds of one
// part a second reported by exception, as a line's agent does: the total counter at
// every part, the scrap counter every 10 s, the state at each change (running 50 s,
// stopped 10 s, in turn), 100 samples per envelope.
const (
	benchAggEquipment = 100
	benchAggSeconds   = 10_000
)

var benchAgg struct {
	done bool
	r    map[string]float64
}

// BenchmarkAggregator measures takt-aggregator's ceiling: it starts on a backlog of
// 967,300 state and counter events in Kafka (kfake, in the benchmark's process)
// and saves them to PostgreSQL as fast as it can, then computes the windows of the
// 100 equipment-days they touched. It reports the events saved per second (from
// the first saved to the last), the seconds until every window is computed, the CPU
// seconds takt-aggregator spent per 100,000 events (the whole run) and its peak RSS.
// The aggregator runs with its defaults (batches of 500 records).
func BenchmarkAggregator(b *testing.B) {
	if !benchAgg.done {
		benchAgg.r = measureAggregator(b)
		benchAgg.done = true
	}
	for b.Loop() {
	}
	for _, name := range []string{"aggregator_events=events", "aggregator_events_per_s=events/s", "aggregator_drain_s=s",
		"aggregator_cpu_s_per_100k_events=s", "aggregator_peak_rss_mib=MiB"} {
		b.ReportMetric(benchAgg.r[name[:strings.IndexByte(name, '=')]], name)
	}
}

func measureAggregator(b *testing.B) map[string]float64 {
	bin := buildBinaries(b)
	dir := b.TempDir()
	db := testkit.NewDatabase(b)
	k := testkit.Kafka(b, testkit.KafkaOptions{Partitions: 4})
	ctx := context.Background()
	pool := db.Pool(b)
	_, err := pool.Exec(ctx, `
WITH tn AS (INSERT INTO tenant VALUES ('bench', 'Bench') RETURNING tenant_id),
s AS (INSERT INTO site (tenant_id, code, name, time_zone) SELECT tenant_id, 'plant', 'Plant', 'UTC' FROM tn RETURNING tenant_id, id),
a AS (INSERT INTO area (tenant_id, site_id, code, name) SELECT tenant_id, id, 'area', 'Area' FROM s RETURNING tenant_id, id),
l AS (INSERT INTO line (tenant_id, area_id, code, name) SELECT tenant_id, id, 'line-1', 'Line' FROM a RETURNING tenant_id, id),
w AS (INSERT INTO work_center (tenant_id, line_id, code, name) SELECT tenant_id, id, 'wc', 'WC' FROM l RETURNING tenant_id, id)
INSERT INTO equipment (tenant_id, work_center_id, code, name, ideal_cycle_time_s)
SELECT tenant_id, id, 'eq-' || g, 'Eq', 0.9 FROM w, generate_series(1, $1) g`, benchAggEquipment)
	if err != nil {
		b.Fatal(err)
	}

	// The backlog, written before the aggregator starts.
	w := &kafka.Writer{Addr: kafka.TCP(k.Brokers()...), Topic: schemas.KafkaEvents, Balancer: &kafka.Hash{},
		RequiredAcks: kafka.RequireAll, BatchTimeout: time.Millisecond, BatchSize: 50} // record batches under the broker's 1 MiB
	defer w.Close()
	day := time.Date(2026, 11, 24, 6, 0, 0, 0, time.UTC)
	events := 0
	for eq := 1; eq <= benchAggEquipment; eq++ {
		var msgs []kafka.Message
		var env *schemas.Envelope
		seq := uint64(0)
		add := func(s schemas.Sample) {
			if env == nil || len(env.Samples) == 100 {
				if env != nil {
					msgs = append(msgs, encodeBench(b, env))
				}
				env = &schemas.Envelope{Version: 1, Tenant: "bench", Site: "plant", Area: "area", Line: "line-1",
					Equipment: fmt.Sprintf("eq-%d", eq), Agent: "gw", Incarnation: "bench"}
			}
			seq++
			s.Seq, s.Quality, s.Kind = seq, schemas.QualityGood, schemas.NumberValue
			env.Samples = append(env.Samples, s)
			events++
		}
		parts, scrap := 0, 0
		for sec := range benchAggSeconds {
			ts := day.Add(time.Duration(sec) * time.Second)
			running := sec%60 < 50
			if sec%60 == 0 || sec%60 == 50 {
				st := schemas.StateRunning
				if !running {
					st = schemas.StateStoppedUnplanned
				}
				add(schemas.Sample{Tag: "state", Role: schemas.RoleState, TS: ts, State: st, Value: float64(st)})
			}
			if running {
				parts++
				if parts%100 == 0 {
					scrap++
				}
				add(schemas.Sample{Tag: "count_total", Role: schemas.RoleCounter, Counter: schemas.CounterTotal, Wrap: 65536, TS: ts, Value: float64(parts % 65536)})
			}
			if sec%10 == 9 {
				add(schemas.Sample{Tag: "count_scrap", Role: schemas.RoleCounter, Counter: schemas.CounterScrap, Wrap: 65536, TS: ts, Value: float64(scrap)})
			}
		}
		msgs = append(msgs, encodeBench(b, env))
		if err := w.WriteMessages(ctx, msgs...); err != nil {
			b.Fatal(err)
		}
	}

	port, err := testkit.FreePort()
	if err != nil {
		b.Fatal(err)
	}
	cfg := filepath.Join(dir, "aggregator.yaml")
	if err := os.WriteFile(cfg, []byte(fmt.Sprintf("http_addr: 127.0.0.1:%d\nrecompute_every: 200ms\n", port)), 0o644); err != nil {
		b.Fatal(err)
	}
	env := []string{"DATABASE_URL=" + db.URL, "TAKT_KAFKA_BROKERS=" + strings.Join(k.Brokers(), ","), "TAKT_PPROF=1"}
	agg, err := startChild(filepath.Join(bin, "takt-aggregator"), filepath.Join(dir, "takt-aggregator.log"), env, "-c", cfg, "run")
	if err != nil {
		b.Fatal(err)
	}
	defer agg.stop()
	saved := func() float64 {
		return metric(b, port, "takt_aggregator_state_observations_total", "") + metric(b, port, "takt_aggregator_counter_readings_total", "")
	}
	deadline := time.Now().Add(10 * time.Minute)
	profiled := make(chan string, 1)
	var first, last time.Time
	var atFirst float64 // saved when first seen moving: the rate counts from there
	for {
		n := saved()
		if n > 0 && first.IsZero() {
			first, atFirst = time.Now(), n
			// A CPU profile of 10 s of saving, summarised on stderr (docs/benchmarks.md
			// says where the time goes from it).
			go func() {
				profiled <- testkit.CPUProfileTop(fmt.Sprintf("http://127.0.0.1:%d/debug/pprof/profile?seconds=10", port),
					filepath.Join(bin, "takt-aggregator"), filepath.Join(dir, "aggregator.pprof"))
			}()
		}
		if n >= float64(events) {
			last = time.Now()
			break
		}
		if time.Now().After(deadline) || agg.exited() {
			b.Fatalf("takt-aggregator saved %v of %d events in 10 min:\n%s", n, events, logTail(agg.log))
		}
		time.Sleep(20 * time.Millisecond)
	}
	// Then every window computed: no dirty day left, every equipment's day written.
	for {
		var dirty, days int
		if err := pool.QueryRow(ctx, `SELECT (SELECT count(*) FROM oee_dirty), (SELECT count(*) FROM oee_window WHERE granularity = 'day')`).Scan(&dirty, &days); err != nil {
			b.Fatal(err)
		}
		if dirty == 0 && days >= benchAggEquipment {
			break
		}
		if time.Now().After(deadline) {
			b.Fatalf("windows not computed in 10 min: %d days dirty, %d computed", dirty, days)
		}
		time.Sleep(50 * time.Millisecond)
	}
	drained := time.Now()
	fmt.Fprintf(os.Stderr, "takt-aggregator CPU profile while saving events:\n%s\n", <-profiled)
	cpu := procCPUSeconds(b, agg.cmd.Process.Pid)
	return map[string]float64{
		"aggregator_events":                float64(events),
		"aggregator_events_per_s":          (float64(events) - atFirst) / last.Sub(first).Seconds(),
		"aggregator_drain_s":               drained.Sub(first).Seconds(),
		"aggregator_cpu_s_per_100k_events": cpu / float64(events) * 1e5,
		"aggregator_peak_rss_mib":          procPeakRSSMiB(b, agg.cmd.Process.Pid),
	}
}

func encodeBench(b *testing.B, e *schemas.Envelope) kafka.Message {
	v, err := schemas.Encode(e)
	if err != nil {
		b.Fatal(err)
	}
	return kafka.Message{Key: e.Path().Key(), Value: v}
}
