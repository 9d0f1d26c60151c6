package sink_test

import (
	"bufio"
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"sync"
	"testing"
	"time"

	"github.com/segmentio/kafka-go"

	"takt.dev/ingest/sink"
	"takt.dev/schemas"
	"takt.dev/testkit"
)

const (
	benchRows    = 500_000
	benchPerEnv  = 500
	benchBatch   = 10_000
	benchAgent   = "gw-bench"
	benchTenant  = "acme"
	benchColumns = "tenant_id, equipment, tag, ts, value, text_value, quality, role, agent, seq"
)

var benchOnce struct {
	sync.Once
	raw, sink float64
	err       error
}

// BenchmarkSinkAgainstRawCopy measures, in one run on one database: the baseline,
// 500,000 narrow sample rows loaded with psql's \copy into the daily-partitioned
// samples table; and the sink committing the same rows from Kafka (500-sample
// envelopes, 10,000-row batches) with exactly-once on (envelope claims, offsets in
// the same transaction). The rows are built once; the figures are reported for every
// b.N, since one load is the measurement.
func BenchmarkSinkAgainstRawCopy(b *testing.B) {
	benchOnce.Do(func() { benchOnce.raw, benchOnce.sink, benchOnce.err = measureSink(b) })
	if benchOnce.err != nil {
		b.Fatal(benchOnce.err)
	}
	for b.Loop() {
	}
	b.ReportMetric(benchOnce.raw, "ingest_raw_copy_rows_per_s=rows/s")
	b.ReportMetric(benchOnce.sink, "ingest_sink_rows_per_s=rows/s")
	b.ReportMetric(benchOnce.sink/benchOnce.raw, "ingest_sink_copy_ratio=ratio")
}

func measureSink(b *testing.B) (raw, sinkRate float64, err error) {
	ctx := context.Background()
	db := testkit.NewDatabase(b)
	pool := db.Pool(b)
	day := time.Date(2026, 11, 25, 0, 0, 0, 0, time.UTC)
	if _, err := pool.Exec(ctx, `SELECT takt_ensure_sample_partitions($1::date, 1)`, day.Format(time.DateOnly)); err != nil {
		return 0, 0, err
	}
	var envs []*schemas.Envelope
	for i := 0; i < benchRows/benchPerEnv; i++ {
		e := &schemas.Envelope{Version: 1, Tenant: benchTenant, Site: "s", Area: "a", Line: "l", Equipment: fmt.Sprint("eq-", i%16), Agent: benchAgent}
		for j := range benchPerEnv {
			seq := uint64(i*benchPerEnv + j + 1)
			e.Samples = append(e.Samples, schemas.Sample{Seq: seq, Tag: fmt.Sprint("tag-", j%40), Role: schemas.RoleMeasurement,
				TS: day.Add(time.Duration(seq) * 100 * time.Millisecond), Kind: schemas.NumberValue, Value: float64(seq) / 3, Quality: schemas.QualityGood})
		}
		envs = append(envs, e)
	}

	// Baseline: psql \copy of the same rows, as CSV.
	csv := filepath.Join(b.TempDir(), "samples.csv")
	f, err := os.Create(csv)
	if err != nil {
		return 0, 0, err
	}
	w := bufio.NewWriter(f)
	for _, e := range envs {
		for _, s := range e.Samples {
			fmt.Fprintf(w, "%s,%s,%s,%s,%s,,%d,%d,%s,%d\n", e.Tenant, e.Equipment, s.Tag, s.TS.Format(time.RFC3339Nano),
				strconv.FormatFloat(s.Value, 'g', -1, 64), s.Quality, s.Role, e.Agent, s.Seq)
		}
	}
	if err := w.Flush(); err != nil {
		return 0, 0, err
	}
	f.Close()
	psql, err := exec.LookPath("psql")
	if err != nil {
		return 0, 0, err
	}
	start := time.Now()
	out, err := exec.Command(psql, db.URL, "-v", "ON_ERROR_STOP=1", "-c",
		`\copy samples (`+benchColumns+`) FROM '`+csv+`' WITH (FORMAT csv)`).CombinedOutput()
	if err != nil {
		return 0, 0, fmt.Errorf("psql: %v: %s", err, out)
	}
	raw = benchRows / time.Since(start).Seconds()
	if _, err := pool.Exec(ctx, `TRUNCATE samples`); err != nil {
		return 0, 0, err
	}

	// The sink: the envelopes are in Kafka before it starts.
	k := testkit.Kafka(b, testkit.KafkaOptions{Partitions: 4})
	kw := &kafka.Writer{Addr: kafka.TCP(k.Brokers()...), Topic: schemas.KafkaSamples, Balancer: &kafka.Hash{},
		RequiredAcks: kafka.RequireAll, BatchTimeout: 2 * time.Millisecond, BatchSize: 20}
	var msgs []kafka.Message
	for _, e := range envs {
		v, err := schemas.Encode(e)
		if err != nil {
			return 0, 0, err
		}
		msgs = append(msgs, kafka.Message{Key: e.Path().Key(), Value: v})
	}
	if err := kw.WriteMessages(ctx, msgs...); err != nil {
		return 0, 0, err
	}
	kw.Close()
	// The sink's rate is its steady state: the rows it commits from its first commit
	// to its last, read from its own counter (takt_sink_rows_total) so that the
	// measurement puts no load on PostgreSQL; joining the consumer group before is
	// not counted (psql has nothing like it), nor are the rows of the first commit.
	r := start2(b, pool, k.Brokers(), sink.Config{Group: "bench", BatchRows: benchBatch, Linger: 50 * time.Millisecond})
	defer r.stop()
	deadline := time.Now().Add(5 * time.Minute)
	var first float64
	for {
		n := r.counter(b, "takt_sink_rows_total")
		switch {
		case n >= benchRows:
			if n := r.counter(b, "takt_sink_rows_total"); n != benchRows {
				return 0, 0, fmt.Errorf("the sink committed %v rows, want %d", n, benchRows)
			}
			return raw, (benchRows - first) / time.Since(start).Seconds(), nil
		case n > 0 && first == 0:
			first, start = n, time.Now()
		case time.Now().After(deadline):
			return 0, 0, fmt.Errorf("sink wrote %v of %d rows in 5 minutes", n, benchRows)
		}
		time.Sleep(2 * time.Millisecond)
	}
}
