package main

import (
	"context"
	"fmt"
	"math/rand/v2"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	mqtt "github.com/eclipse/paho.mqtt.golang"
	"github.com/jackc/pgx/v5/pgxpool"

	"takt.dev/schemas"
	"takt.dev/testkit"
)

// The fault tests run the whole ingest path (MQTT → bridge → Kafka → sink →
// PostgreSQL) with takt-ingest as real child processes, break one link while an
// agent publishes, and then check that PostgreSQL holds every sample sent exactly
// once.

type pipeline struct {
	mq    *testkit.MosquittoServer
	k     *testkit.KafkaServer
	db    *testkit.Database
	pool  *pgxpool.Pool
	group string // MQTT shared-subscription group, unique per test
	dir   string
}

func newPipeline(t *testing.T) *pipeline {
	t.Helper()
	p := &pipeline{mq: testkit.Mosquitto(t), k: testkit.Kafka(t), db: testkit.NewDatabase(t), dir: t.TempDir()}
	p.pool = p.db.Pool(t)
	p.group = fmt.Sprintf("g%d", time.Now().UnixNano())
	return p
}

// start runs takt-ingest MODE as a child process; clientID names its MQTT session.
// Extra YAML lines go into the bridge section.
func (p *pipeline) start(t *testing.T, mode, clientID string, bridgeYAML ...string) *testkit.Process {
	t.Helper()
	cfg := filepath.Join(p.dir, mode+"-"+clientID+".yaml")
	body := fmt.Sprintf("http_addr: 127.0.0.1:0\nbridge:\n  client_id: %s-%s\n  group: %s\n%ssink:\n  batch_rows: 2000\n  linger: 30ms\n",
		p.group, clientID, p.group, strings.Join(bridgeYAML, ""))
	if err := os.WriteFile(cfg, []byte(body), 0o644); err != nil {
		t.Fatal(err)
	}
	logPath := filepath.Join(p.dir, mode+"-"+clientID+".log")
	subscribed := func() int {
		b, _ := os.ReadFile(logPath)
		return strings.Count(string(b), "connected and subscribed")
	}
	before := subscribed()
	c := testkit.StartChild(t, logPath,
		"TAKT_INGEST_CHILD=-c "+cfg+" "+mode,
		"DATABASE_URL="+p.db.URL, "TAKT_MQTT_URL="+p.mq.URL(), "TAKT_KAFKA_BROKERS="+strings.Join(p.k.Brokers(), ","))
	if mode != "sink" {
		// A message published before any bridge of the group has subscribed has no
		// subscriber and is gone (MQTT): bridges must be up before agents publish.
		for deadline := time.Now().Add(30 * time.Second); subscribed() == before; time.Sleep(20 * time.Millisecond) {
			if time.Now().After(deadline) {
				t.Fatalf("bridge %s did not subscribe within 30s", clientID)
			}
		}
	}
	return c
}

// agent publishes envelopes the way the edge agent does: each one until the broker
// acknowledged it, the same bytes again after any failure.
type agent struct {
	name        string
	incarnation string // stamped on its envelopes; a re-imaged gateway has a new one
	client      mqtt.Client
}

func (p *pipeline) agent(t *testing.T, name string) *agent {
	t.Helper()
	o := mqtt.NewClientOptions().AddBroker(p.mq.URL()).SetClientID(p.group + "-agent-" + name).
		SetAutoReconnect(true).SetConnectRetry(true).SetConnectRetryInterval(100 * time.Millisecond).
		SetMaxReconnectInterval(500 * time.Millisecond)
	c := mqtt.NewClient(o)
	if tok := c.Connect(); !tok.WaitTimeout(10*time.Second) || tok.Error() != nil {
		t.Fatalf("agent connect: %v", tok.Error())
	}
	t.Cleanup(func() { c.Disconnect(100) })
	return &agent{name: name, client: c}
}

var equipment = []string{"filler-1", "capper-1", "labeler-1"}

// envelopes returns n envelopes of per samples each, seq from first, rotating over
// three equipment of one line.
func (a *agent) envelopes(t *testing.T, first uint64, n, per int) []envelope {
	t.Helper()
	out := make([]envelope, 0, n)
	seq := first
	for i := range n {
		e := schemas.Envelope{Version: 1, Tenant: "acme", Site: "lyon", Area: "pack", Line: "l1",
			Equipment: equipment[i%len(equipment)], Agent: a.name, Incarnation: a.incarnation}
		now := time.Now().UTC()
		for j := range per {
			role := schemas.RoleMeasurement
			s := schemas.Sample{Seq: seq, Tag: fmt.Sprint("t", j%10), Role: role, TS: now,
				Kind: schemas.NumberValue, Value: float64(seq), Quality: schemas.QualityGood}
			if j == 0 {
				s.Tag, s.Role, s.Counter = "count_total", schemas.RoleCounter, schemas.CounterTotal
			}
			e.Samples = append(e.Samples, s)
			seq++
		}
		b, err := schemas.Encode(&e)
		if err != nil {
			t.Fatal(err)
		}
		out = append(out, envelope{topic: e.Path().Topic(), payload: b})
	}
	return out
}

type envelope struct {
	topic   string
	payload []byte
}

// send publishes every envelope at QoS 1, retrying each until PUBACK.
func (a *agent) send(envs []envelope, pause time.Duration) {
	for _, e := range envs {
		for {
			tok := a.client.Publish(e.topic, 1, false, e.payload)
			if tok.WaitTimeout(3*time.Second) && tok.Error() == nil {
				break
			}
			time.Sleep(100 * time.Millisecond)
		}
		if pause > 0 {
			time.Sleep(pause)
		}
	}
}

// rows returns how many samples PostgreSQL holds.
func (p *pipeline) rows(t *testing.T) int {
	t.Helper()
	var n int
	if err := p.pool.QueryRow(context.Background(), `SELECT count(*) FROM samples`).Scan(&n); err != nil {
		return -1 // the database may be down in a fault test
	}
	return n
}

// waitRows waits until at least n rows are stored.
func (p *pipeline) waitRows(t *testing.T, n int, within time.Duration) {
	t.Helper()
	deadline := time.Now().Add(within)
	for p.rows(t) < n {
		if time.Now().After(deadline) {
			t.Fatalf("%d rows after %s, want %d", p.rows(t), within, n)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// expectExactly waits for want rows and checks that every agent's seqs 1..count are
// there exactly once: the rows equal the samples sent.
func (p *pipeline) expectExactly(t *testing.T, perAgent map[string]int) {
	t.Helper()
	want := 0
	for _, n := range perAgent {
		want += n
	}
	deadline := time.Now().Add(120 * time.Second)
	for p.rows(t) < want && time.Now().Before(deadline) {
		time.Sleep(50 * time.Millisecond)
	}
	time.Sleep(500 * time.Millisecond) // anything arriving now is a duplicate
	rows, err := p.pool.Query(context.Background(),
		`SELECT agent, count(*), count(DISTINCT seq), min(seq), max(seq) FROM samples GROUP BY agent`)
	if err != nil {
		t.Fatal(err)
	}
	got := map[string]bool{}
	for rows.Next() {
		var agent string
		var total, distinct, lo, hi int
		if err := rows.Scan(&agent, &total, &distinct, &lo, &hi); err != nil {
			t.Fatal(err)
		}
		got[agent] = true
		n := perAgent[agent]
		if total != n || distinct != n || lo != 1 || hi != n {
			t.Errorf("agent %s: %d rows, %d distinct seq in %d..%d; want seq 1..%d once each", agent, total, distinct, lo, hi, n)
		}
	}
	if err := rows.Err(); err != nil {
		t.Fatal(err)
	}
	for agent := range perAgent {
		if !got[agent] {
			t.Errorf("agent %s: no rows at all", agent)
		}
	}
}

const (
	faultEnvelopes = 240
	faultPer       = 50
)

// sendInBackground publishes envs and closes the returned channel when done.
func sendInBackground(a *agent, envs []envelope, pause time.Duration) <-chan struct{} {
	done := make(chan struct{})
	go func() { a.send(envs, pause); close(done) }()
	return done
}

func TestFaultSinkKilledMidBatch(t *testing.T) {
	p := newPipeline(t)
	p.start(t, "bridge", "b1")
	sink := p.start(t, "sink", "s")
	a := p.agent(t, "gw1")
	sent := sendInBackground(a, a.envelopes(t, 1, faultEnvelopes, faultPer), 5*time.Millisecond)
	for range 2 {
		p.waitRows(t, p.rows(t)+1, 60*time.Second)
		sink.Kill()
		time.Sleep(300 * time.Millisecond)
		sink = p.start(t, "sink", "s")
	}
	<-sent
	p.expectExactly(t, map[string]int{"gw1": faultEnvelopes * faultPer})
}

func TestFaultBridgeKilledWithMessagesInFlight(t *testing.T) {
	p := newPipeline(t)
	bridge := p.start(t, "bridge", "b1")
	p.start(t, "sink", "s")
	a := p.agent(t, "gw1")
	sent := sendInBackground(a, a.envelopes(t, 1, faultEnvelopes, faultPer), 5*time.Millisecond)
	for range 2 {
		p.waitRows(t, p.rows(t)+1, 60*time.Second)
		bridge.Kill()
		time.Sleep(500 * time.Millisecond) // the broker queues for the session meanwhile
		bridge = p.start(t, "bridge", "b1")
	}
	<-sent
	p.expectExactly(t, map[string]int{"gw1": faultEnvelopes * faultPer})
}

// TestFaultMQTTBrokerRestartedUnderLoad uses a plain subscription: Mosquitto 2.0
// restores those of persistent sessions after a restart, but not shared ones.
func TestFaultMQTTBrokerRestartedUnderLoad(t *testing.T) {
	p := newPipeline(t)
	p.start(t, "bridge", "b1", "  subscription: plain\n")
	p.start(t, "sink", "s")
	a := p.agent(t, "gw1")
	sent := sendInBackground(a, a.envelopes(t, 1, faultEnvelopes, faultPer), 5*time.Millisecond)
	p.waitRows(t, 1, 60*time.Second)
	if err := p.mq.Stop(); err != nil {
		t.Fatal(err)
	}
	time.Sleep(time.Second)
	if err := p.mq.Start(); err != nil {
		t.Fatal(err)
	}
	<-sent
	p.expectExactly(t, map[string]int{"gw1": faultEnvelopes * faultPer})
}

func TestFaultKafkaCut(t *testing.T) {
	p := newPipeline(t)
	p.start(t, "bridge", "b1")
	p.start(t, "sink", "s")
	a := p.agent(t, "gw1")
	sent := sendInBackground(a, a.envelopes(t, 1, faultEnvelopes, faultPer), 5*time.Millisecond)
	p.waitRows(t, 1, 60*time.Second)
	p.k.Proxy.Cut()
	time.Sleep(3 * time.Second)
	p.k.Proxy.Restore()
	<-sent
	p.expectExactly(t, map[string]int{"gw1": faultEnvelopes * faultPer})
}

func TestFaultPostgresRestartedUnderLoad(t *testing.T) {
	p := newPipeline(t)
	pg := testkit.Postgres(t)
	p.start(t, "bridge", "b1")
	p.start(t, "sink", "s")
	a := p.agent(t, "gw1")
	sent := sendInBackground(a, a.envelopes(t, 1, faultEnvelopes, faultPer), 5*time.Millisecond)
	p.waitRows(t, 1, 60*time.Second)
	if err := pg.Kill(); err != nil {
		t.Fatal(err)
	}
	time.Sleep(time.Second)
	if err := pg.Start(); err != nil {
		t.Fatal(err)
	}
	<-sent
	p.expectExactly(t, map[string]int{"gw1": faultEnvelopes * faultPer})
}

// TestTwoBridgesWithBacklogReplay: two bridges share the subscription while one agent
// replays a backlog (old seqs) interleaved with live data (new seqs), some envelopes
// twice, and a second agent publishes alongside: seq arrives out of order at the sink.
func TestTwoBridgesWithBacklogReplay(t *testing.T) {
	p := newPipeline(t)
	p.start(t, "bridge", "b1")
	p.start(t, "bridge", "b2")
	p.start(t, "sink", "s1")
	p.start(t, "sink", "s2")
	gw1, gw2 := p.agent(t, "gw1"), p.agent(t, "gw2")
	const backlog = 120
	all := gw1.envelopes(t, 1, faultEnvelopes, faultPer)
	old, live := all[:backlog], all[backlog:]
	replayed := append([]envelope{}, old...)
	rng := rand.New(rand.NewPCG(7, 7))
	for range 30 {
		replayed = append(replayed, old[rng.IntN(len(old))]) // resent: acknowledged late
	}
	rng.Shuffle(len(replayed), func(i, j int) { replayed[i], replayed[j] = replayed[j], replayed[i] })

	var wg sync.WaitGroup
	wg.Add(3)
	go func() { defer wg.Done(); gw1.send(live, 3*time.Millisecond) }()
	go func() { defer wg.Done(); gw1.send(replayed, 2*time.Millisecond) }()
	go func() { defer wg.Done(); gw2.send(gw2.envelopes(t, 1, 100, 20), 4*time.Millisecond) }()
	wg.Wait()
	p.expectExactly(t, map[string]int{"gw1": faultEnvelopes * faultPer, "gw2": 100 * 20})

	var spread int
	if err := p.pool.QueryRow(context.Background(), `SELECT count(DISTINCT partition) FROM sink_offset`).Scan(&spread); err != nil || spread < 2 {
		t.Fatalf("the sinks consumed %d partitions (%v); want the load spread over several", spread, err)
	}
}

// TestFaultReimagedGateway: a gateway is re-imaged (its buffer directory gone, the
// same agent id) and starts seq over from 1 under a new incarnation, while a replay
// of the old run's envelopes is still arriving. The new run's data is stored, not
// dropped as duplicates of the old; the old run's resends are still dropped.
func TestFaultReimagedGateway(t *testing.T) {
	p := newPipeline(t)
	p.start(t, "bridge", "b1")
	p.start(t, "sink", "s")
	a := p.agent(t, "gw1")
	a.incarnation = "run-1"
	old := a.envelopes(t, 1, 80, faultPer)
	a.send(old, 2*time.Millisecond)
	a.incarnation = "run-2"
	fresh := a.envelopes(t, 1, 80, faultPer)
	var wg sync.WaitGroup
	wg.Add(2)
	go func() { defer wg.Done(); a.send(fresh, 2*time.Millisecond) }()
	go func() { defer wg.Done(); a.send(old[40:], 2*time.Millisecond) }() // the old run's resends
	wg.Wait()
	want := 2 * 80 * faultPer
	p.waitRows(t, want, 120*time.Second)
	time.Sleep(500 * time.Millisecond) // anything arriving now is a duplicate
	var total, distinct, twice int
	err := p.pool.QueryRow(context.Background(), `SELECT count(*), count(DISTINCT seq), count(*) FILTER (WHERE n = 2) FROM
		(SELECT seq, count(*) OVER (PARTITION BY seq) AS n FROM samples WHERE agent = 'gw1') s`).Scan(&total, &distinct, &twice)
	if err != nil {
		t.Fatal(err)
	}
	if total != want || distinct != want/2 || twice != want {
		t.Fatalf("%d rows, %d distinct seqs, %d rows of a seq stored twice; want %d rows: seq 1..%d once per run", total, distinct, twice, want, want/2)
	}
}
