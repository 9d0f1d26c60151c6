package sink_test

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	"math/rand/v2"
	"strings"
	"testing"
	"time"

	"github.com/jackc/pgx/v5/pgxpool"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/segmentio/kafka-go"

	"takt.dev/ingest/sink"
	"takt.dev/schemas"
	"takt.dev/testkit"
)

func TestMain(m *testing.M) { testkit.Main(m) }

// envelopes makes n envelopes of per samples each for agent, spread over 3
// equipment and two UTC days, seq counting from 1.
func envelopes(t *testing.T, agent string, n, per int) [][]byte {
	t.Helper()
	var out [][]byte
	seq := uint64(1)
	ts := time.Date(2026, 11, 24, 23, 0, 0, 0, time.UTC)
	for i := range n {
		e := schemas.Envelope{Version: 1, Tenant: "acme", Site: "s", Area: "a", Line: "l",
			Equipment: fmt.Sprint("eq-", i%3), Agent: agent}
		for range per {
			e.Samples = append(e.Samples, schemas.Sample{Seq: seq, Tag: "t", Role: schemas.RoleMeasurement,
				TS: ts.Add(time.Duration(seq) * time.Second), Kind: schemas.NumberValue, Value: float64(seq), Quality: schemas.QualityGood})
			seq++
		}
		b, err := schemas.Encode(&e)
		if err != nil {
			t.Fatal(err)
		}
		out = append(out, b)
	}
	return out
}

func produce(t *testing.T, brokers []string, values ...[]byte) {
	t.Helper()
	w := &kafka.Writer{Addr: kafka.TCP(brokers...), Topic: schemas.KafkaSamples, Balancer: &kafka.Hash{},
		RequiredAcks: kafka.RequireAll, BatchTimeout: 2 * time.Millisecond}
	defer w.Close()
	var msgs []kafka.Message
	for _, v := range values {
		var e struct{ Tenant, Equipment string }
		_ = json.Unmarshal(v, &e)
		msgs = append(msgs, kafka.Message{Key: []byte(e.Tenant + "/" + e.Equipment), Value: v})
	}
	if err := w.WriteMessages(context.Background(), msgs...); err != nil {
		t.Fatal(err)
	}
}

type running struct {
	cancel context.CancelFunc
	done   chan error
	reg    *prometheus.Registry
}

// counter reads one of the sink's counters without labels.
func (r *running) counter(t testing.TB, name string) float64 {
	t.Helper()
	mfs, err := r.reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	for _, mf := range mfs {
		if mf.GetName() == name {
			return mf.GetMetric()[0].GetCounter().GetValue()
		}
	}
	t.Fatalf("no counter %s", name)
	return 0
}

// deadLetters reads the sink's takt_sink_dead_letters_total{reason}.
func (r *running) deadLetters(t *testing.T, reason schemas.Reason) float64 {
	t.Helper()
	mfs, err := r.reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	for _, mf := range mfs {
		if mf.GetName() != "takt_sink_dead_letters_total" {
			continue
		}
		for _, m := range mf.GetMetric() {
			if m.GetLabel()[0].GetValue() == string(reason) {
				return m.GetCounter().GetValue()
			}
		}
	}
	return 0
}

func start(t *testing.T, pool *pgxpool.Pool, brokers []string, cfg sink.Config) *running {
	t.Helper()
	return start2(t, pool, brokers, cfg)
}

func start2(t testing.TB, pool *pgxpool.Pool, brokers []string, cfg sink.Config) *running {
	t.Helper()
	cfg.KafkaBrokers = brokers
	if cfg.Linger == 0 {
		cfg.Linger = 20 * time.Millisecond
	}
	reg := prometheus.NewRegistry()
	s, err := sink.New(cfg, pool, slog.New(slog.NewTextHandler(io.Discard, nil)), reg)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	r := &running{cancel: cancel, done: make(chan error, 1), reg: reg}
	go func() { r.done <- s.Run(ctx) }()
	t.Cleanup(r.stop)
	return r
}

func (r *running) stop() {
	if r.cancel != nil {
		r.cancel()
		<-r.done
		r.cancel = nil
	}
}

// waitRows waits until samples holds want rows and then checks each (agent, seq)
// is there exactly once.
func waitRows(t *testing.T, pool *pgxpool.Pool, want int) {
	t.Helper()
	ctx := context.Background()
	deadline := time.Now().Add(60 * time.Second)
	var n int
	for {
		if err := pool.QueryRow(ctx, `SELECT count(*) FROM samples`).Scan(&n); err == nil && n >= want {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("samples holds %d rows after 60s, want %d", n, want)
		}
		time.Sleep(50 * time.Millisecond)
	}
	time.Sleep(300 * time.Millisecond) // anything more would be a duplicate
	var total, distinct, dayParts int
	err := pool.QueryRow(ctx, `SELECT count(*), count(DISTINCT (agent, seq)) FROM samples`).Scan(&total, &distinct)
	if err != nil {
		t.Fatal(err)
	}
	if total != want || distinct != want {
		t.Fatalf("samples holds %d rows, %d distinct (agent, seq); want %d of each", total, distinct, want)
	}
	if err := pool.QueryRow(ctx, `SELECT count(*) FROM samples_default`).Scan(&dayParts); err != nil || dayParts != 0 {
		t.Fatalf("%d rows in the default partition (%v): day partitions should have been made on demand", dayParts, err)
	}
}

func TestExactlyOnceWithDuplicatesOutOfOrder(t *testing.T) {
	k := testkit.Kafka(t)
	pool := testkit.NewDatabase(t).Pool(t)
	envs := envelopes(t, "gw1", 60, 50)
	// Every envelope twice, in a shuffled order: replays and redeliveries.
	sent := append(append([][]byte{}, envs...), envs...)
	rand.New(rand.NewPCG(1, 2)).Shuffle(len(sent), func(i, j int) { sent[i], sent[j] = sent[j], sent[i] })
	produce(t, k.Brokers(), sent[:70]...)
	start(t, pool, k.Brokers(), sink.Config{Group: "g", BatchRows: 500})
	produce(t, k.Brokers(), sent[70:]...)
	waitRows(t, pool, 60*50)
}

// sink.max_concurrent_copies bounds the batches written at once across partitions:
// with one slot and a backlog on every partition, batches wait for it (counted), and
// every row is still written once.
func TestConcurrentCopiesAreBounded(t *testing.T) {
	k := testkit.Kafka(t, testkit.KafkaOptions{Partitions: 4})
	pool := testkit.NewDatabase(t).Pool(t)
	produce(t, k.Brokers(), envelopes(t, "gw1", 120, 50)...)
	r := start(t, pool, k.Brokers(), sink.Config{Group: "g", BatchRows: 100, MaxCopies: 1})
	waitRows(t, pool, 120*50)
	if n := r.counter(t, "takt_sink_copy_slot_waits_total"); n == 0 {
		t.Fatal("no batch waited for the one COPY slot while four partitions had a backlog")
	}
}

func TestResumesFromStoredOffsets(t *testing.T) {
	k := testkit.Kafka(t)
	pool := testkit.NewDatabase(t).Pool(t)
	envs := envelopes(t, "gw1", 40, 25)
	produce(t, k.Brokers(), envs[:20]...)
	r := start(t, pool, k.Brokers(), sink.Config{Group: "g"})
	waitRows(t, pool, 20*25)
	r.stop()
	produce(t, k.Brokers(), envs[20:]...)
	start(t, pool, k.Brokers(), sink.Config{Group: "g"})
	waitRows(t, pool, 40*25)
	var stored int64
	if err := pool.QueryRow(context.Background(), `SELECT sum(next_offset) FROM sink_offset WHERE consumer_group = 'g'`).Scan(&stored); err != nil || stored != 40 {
		t.Fatalf("stored offsets add up to %d (%v), want 40 records", stored, err)
	}
}

func TestPostgresKilledUnderLoad(t *testing.T) {
	k := testkit.Kafka(t)
	pg := testkit.Postgres(t)
	pool := testkit.NewDatabase(t).Pool(t)
	envs := envelopes(t, "gw1", 200, 100)
	start(t, pool, k.Brokers(), sink.Config{Group: "g", BatchRows: 1000, MaxBackoff: 200 * time.Millisecond})
	produce(t, k.Brokers(), envs[:100]...)
	time.Sleep(100 * time.Millisecond)
	if err := pg.Kill(); err != nil {
		t.Fatal(err)
	}
	produce(t, k.Brokers(), envs[100:]...)
	time.Sleep(500 * time.Millisecond)
	if err := pg.Start(); err != nil {
		t.Fatal(err)
	}
	waitRows(t, pool, 200*100)
}

func TestTwoSinksRebalance(t *testing.T) {
	k := testkit.Kafka(t)
	pool := testkit.NewDatabase(t).Pool(t)
	envs := envelopes(t, "gw1", 300, 20)
	first := start(t, pool, k.Brokers(), sink.Config{Group: "g", BatchRows: 200})
	produce(t, k.Brokers(), envs[:100]...)
	start(t, pool, k.Brokers(), sink.Config{Group: "g", BatchRows: 200}) // joins: rebalance
	produce(t, k.Brokers(), envs[100:200]...)
	first.stop() // leaves: rebalance again
	produce(t, k.Brokers(), envs[200:]...)
	waitRows(t, pool, 300*20)
}

func TestRefusedRecordsGoToDeadLetters(t *testing.T) {
	k := testkit.Kafka(t)
	pool := testkit.NewDatabase(t).Pool(t)
	envs := envelopes(t, "gw1", 3, 10)
	// Valid for the contract, refused by the database (a text with a NUL, which
	// PostgreSQL's text cannot hold), and large: 200 texts of 4 KB, about 830 kB,
	// so that its dead letter, whole and base64-encoded, would not fit a Kafka write.
	huge := schemas.Envelope{Version: 1, Tenant: "acme", Site: "s", Area: "a", Line: "l", Equipment: "eq-0", Agent: "gw2"}
	for i := range 200 {
		text := strings.Repeat("x", 4000)
		if i == 150 {
			text = "nul\x00" + text[5:]
		}
		huge.Samples = append(huge.Samples, schemas.Sample{Seq: uint64(i + 1), Tag: "lot", Role: schemas.RoleMeasurement,
			TS: time.Date(2026, 11, 25, 0, 0, i, 0, time.UTC), Kind: schemas.TextValue, Text: text, Quality: schemas.QualityGood})
	}
	hugeBytes, err := schemas.Encode(&huge)
	if err != nil {
		t.Fatal(err)
	}
	if len(hugeBytes) < 800_000 {
		t.Fatalf("the envelope is %d bytes", len(hugeBytes))
	}
	produce(t, k.Brokers(), envs[0], []byte(`{"tenant":"acme","equipment":"eq-0","this":"is not an envelope"}`), hugeBytes, envs[1], envs[2])
	sk := start(t, pool, k.Brokers(), sink.Config{Group: "g"})
	waitRows(t, pool, 30)

	r := kafka.NewReader(kafka.ReaderConfig{Brokers: k.Brokers(), GroupID: "check", Topic: schemas.KafkaDeadLetter,
		StartOffset: kafka.FirstOffset, MaxWait: 50 * time.Millisecond})
	defer r.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	reasons := map[schemas.Reason]bool{}
	for len(reasons) < 2 {
		m, err := r.ReadMessage(ctx)
		if err != nil {
			t.Fatalf("dead letters: %v (have %v)", err, reasons)
		}
		var dl schemas.DeadLetter
		if err := json.Unmarshal(m.Value, &dl); err != nil {
			t.Fatal(err)
		}
		reasons[dl.Reason] = true
		if dl.Reason == schemas.ReasonRejectedByDatabase {
			sum := sha256.Sum256(hugeBytes)
			if !dl.Truncated || dl.PayloadBytes != len(hugeBytes) || dl.PayloadSHA256 != hex.EncodeToString(sum[:]) ||
				len(dl.Payload) != schemas.DefaultDeadLetterPayload || string(dl.Payload) != string(hugeBytes[:len(dl.Payload)]) {
				t.Fatalf("dead letter of the large envelope: truncated %v, %d bytes of %d, sha256 %s", dl.Truncated, len(dl.Payload), dl.PayloadBytes, dl.PayloadSHA256)
			}
		}
	}
	if !reasons[schemas.ReasonMalformed] || !reasons[schemas.ReasonRejectedByDatabase] {
		t.Fatalf("dead-letter reasons %v, want malformed and rejected_by_database", reasons)
	}
	// The letters are indexed for the API, with their tenant.
	deadline := time.Now().Add(30 * time.Second)
	for {
		var n int
		pool.QueryRow(ctx, `SELECT count(*) FROM dead_letter WHERE tenant_id = 'acme' AND reason IN ('malformed', 'rejected_by_database')
			AND payload_sha256 <> ''`).Scan(&n)
		if n == 2 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("%d dead letters indexed for tenant acme, want 2", n)
		}
		time.Sleep(50 * time.Millisecond)
	}
	// The metrics count letters, not attempts.
	for reason, want := range map[schemas.Reason]float64{schemas.ReasonMalformed: 1, schemas.ReasonRejectedByDatabase: 1} {
		if got := sk.deadLetters(t, reason); got != want {
			t.Errorf("takt_sink_dead_letters_total{reason=%q} = %v, want %v", reason, got, want)
		}
	}
}

// One envelope naming far-apart days (a PLC clock gone wrong, written by something
// other than the bridge, which refuses it) makes no partition outside the timestamp
// window: its rows land in the default partition, and a metric says so.
func TestNoPartitionsOutsideTheWindow(t *testing.T) {
	k := testkit.Kafka(t)
	pool := testkit.NewDatabase(t).Pool(t)
	env := schemas.Envelope{Version: 1, Tenant: "acme", Site: "s", Area: "a", Line: "l", Equipment: "eq-0", Agent: "gw9"}
	for i, ts := range []time.Time{time.Date(1971, 1, 1, 0, 0, 0, 0, time.UTC), time.Date(2080, 1, 1, 0, 0, 0, 0, time.UTC), time.Date(9999, 1, 1, 0, 0, 0, 0, time.UTC), time.Now().UTC()} {
		env.Samples = append(env.Samples, schemas.Sample{Seq: uint64(i + 1), Tag: "t", Role: schemas.RoleMeasurement, TS: ts,
			Kind: schemas.NumberValue, Value: 1, Quality: schemas.QualityGood})
	}
	b, err := schemas.Encode(&env)
	if err != nil {
		t.Fatal(err)
	}
	ctx := context.Background()
	var before int
	pool.QueryRow(ctx, `SELECT count(*) FROM pg_inherits WHERE inhparent = 'samples'::regclass`).Scan(&before)
	produce(t, k.Brokers(), b)
	start(t, pool, k.Brokers(), sink.Config{Group: "g"})
	deadline := time.Now().Add(30 * time.Second)
	for n := 0; n < 4; pool.QueryRow(ctx, `SELECT count(*) FROM samples`).Scan(&n) {
		if time.Now().After(deadline) {
			t.Fatalf("%d rows stored, want 4", n)
		}
		time.Sleep(50 * time.Millisecond)
	}
	var after, inDefault int
	pool.QueryRow(ctx, `SELECT count(*) FROM pg_inherits WHERE inhparent = 'samples'::regclass`).Scan(&after)
	pool.QueryRow(ctx, `SELECT count(*) FROM samples_default`).Scan(&inDefault)
	if after-before > 1 || inDefault != 3 {
		t.Fatalf("%d partitions made, %d rows in the default partition; want at most 1 (today's) and 3", after-before, inDefault)
	}
}

// incarnationEnvelopes makes n envelopes of per samples for agent's incarnation
// inc, seq counting from 1, values offset by base.
func incarnationEnvelopes(t *testing.T, agent, inc string, n, per int, base float64) [][]byte {
	t.Helper()
	var out [][]byte
	seq := uint64(1)
	for range n {
		e := schemas.Envelope{Version: 1, Tenant: "acme", Site: "s", Area: "a", Line: "l", Equipment: "eq-0", Agent: agent, Incarnation: inc}
		for range per {
			e.Samples = append(e.Samples, schemas.Sample{Seq: seq, Tag: "t", Role: schemas.RoleMeasurement,
				TS: time.Now().UTC().Add(-time.Hour).Add(time.Duration(base) * time.Second), Kind: schemas.NumberValue, Value: base + float64(seq), Quality: schemas.QualityGood})
			seq++
		}
		b, err := schemas.Encode(&e)
		if err != nil {
			t.Fatal(err)
		}
		out = append(out, b)
	}
	return out
}

// A re-imaged gateway starts its seq over under a new incarnation: its data is
// stored, not dropped as duplicates of the old run's envelopes. An envelope that
// reuses an identity with other content is a conflict: set aside with its own
// reason, on the fast path and on the envelope-by-envelope path alike, and the
// stored one is kept.
func TestNewIncarnationIsNotADuplicateAndConflictsAreSetAside(t *testing.T) {
	k := testkit.Kafka(t)
	pool := testkit.NewDatabase(t).Pool(t)
	ctx := context.Background()
	before := incarnationEnvelopes(t, "gw1", "run-a", 10, 10, 0)
	after := incarnationEnvelopes(t, "gw1", "run-b", 10, 10, 1000) // seq 1..100 again
	legacy := incarnationEnvelopes(t, "gw2", "", 2, 10, 0)         // an agent that sends no incarnation
	conflict := incarnationEnvelopes(t, "gw1", "run-b", 1, 5, 2000)[0]
	legacyConflict := incarnationEnvelopes(t, "gw2", "", 1, 3, 3000)[0]
	sk := start(t, pool, k.Brokers(), sink.Config{Group: "g", BatchRows: 100_000, Linger: 300 * time.Millisecond})

	// Fast path: one batch holding both runs, resends, and a conflict.
	produce(t, k.Brokers(), append(append(append(append([][]byte{}, before...), after...), legacy...), before[3], after[7], conflict)...)
	count := func() (rows, distinct int) {
		t.Helper()
		if err := pool.QueryRow(ctx, `SELECT count(*), count(DISTINCT (agent, seq, value)) FROM samples`).Scan(&rows, &distinct); err != nil {
			t.Fatal(err)
		}
		return rows, distinct
	}
	waitFor(t, "both runs stored", func() bool { n, _ := count(); return n >= 220 })
	waitFor(t, "the conflict set aside", func() bool { return sk.deadLetters(t, schemas.ReasonIdentityConflict) == 1 })

	// Slow path: a batch the database refuses in part (a NUL in a text) goes
	// envelope by envelope; the conflict in it is caught there too.
	nul := schemas.Envelope{Version: 1, Tenant: "acme", Site: "s", Area: "a", Line: "l", Equipment: "eq-0", Agent: "gw3",
		Samples: []schemas.Sample{{Seq: 1, Tag: "lot", Role: schemas.RoleMeasurement, TS: time.Now().UTC(), Kind: schemas.TextValue, Text: "a\x00b", Quality: schemas.QualityGood}}}
	nulBytes, err := schemas.Encode(&nul)
	if err != nil {
		t.Fatal(err)
	}
	fresh := incarnationEnvelopes(t, "gw1", "run-c", 1, 10, 4000)[0]
	produce(t, k.Brokers(), legacyConflict, nulBytes, before[0], fresh)
	waitFor(t, "the second conflict set aside", func() bool { return sk.deadLetters(t, schemas.ReasonIdentityConflict) == 2 })
	waitFor(t, "the refused envelope set aside", func() bool { return sk.deadLetters(t, schemas.ReasonRejectedByDatabase) == 1 })
	time.Sleep(300 * time.Millisecond)
	rows, distinct := count()
	if rows != 230 || distinct != 230 {
		t.Fatalf("samples holds %d rows, %d distinct; want 230 (100 per run of gw1 and 10 of run-c, 20 of gw2), each once", rows, distinct)
	}
	var claims, conflicted int
	if err := pool.QueryRow(ctx, `SELECT count(*), count(*) FILTER (WHERE samples <> 10) FROM sink_envelope`).Scan(&claims, &conflicted); err != nil {
		t.Fatal(err)
	}
	if claims != 23 || conflicted != 0 {
		t.Fatalf("%d claims (%d of a conflicting envelope); want 23 claims of 10 samples each", claims, conflicted)
	}
}

func waitFor(t *testing.T, what string, ok func() bool) {
	t.Helper()
	deadline := time.Now().Add(60 * time.Second)
	for !ok() {
		if time.Now().After(deadline) {
			t.Fatalf("after 60 s: not yet %s", what)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// The sink as a login role of takt_ingest (migration 00019): with BYPASSRLS it
// writes; without, PostgreSQL would refuse every COPY into samples, so the sink
// refuses to start and says what the role lacks; a role outside takt_ingest too.
func TestSinkRole(t *testing.T) {
	db := testkit.NewDatabase(t)
	owner := db.Pool(t)
	k := testkit.Kafka(t)
	as := func(attrs string) *pgxpool.Pool { return db.Login(t, attrs) } // as the DBA: only a superuser may give BYPASSRLS
	for _, c := range []struct{ attrs, want string }{
		{"IN ROLE takt_ingest", "subject to row-level security on samples"},
		{"BYPASSRLS", "make it a member of takt_ingest"},
	} {
		r := start2(t, as(c.attrs), k.Brokers(), sink.Config{})
		select {
		case err := <-r.done:
			r.cancel = nil
			if err == nil || !strings.Contains(err.Error(), c.want) {
				t.Fatalf("sink as a role %s: %v, want an error saying %q", c.attrs, err, c.want)
			}
		case <-time.After(30 * time.Second):
			t.Fatalf("sink as a role %s kept running; want it refused", c.attrs)
		}
	}
	start(t, as("BYPASSRLS IN ROLE takt_ingest"), k.Brokers(), sink.Config{})
	produce(t, k.Brokers(), envelopes(t, "gw-role", 4, 5)...)
	waitRows(t, owner, 20)
}
