package bridge_test

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	"strings"
	"testing"
	"time"

	mqtt "github.com/eclipse/paho.mqtt.golang"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"
	"github.com/segmentio/kafka-go"

	"takt.dev/ingest/bridge"
	"takt.dev/schemas"
	"takt.dev/testkit"
)

func TestMain(m *testing.M) { testkit.Main(m) }

var path = schemas.Path{Tenant: "acme", Site: "lyon", Area: "pack", Line: "l1", Equipment: "filler-1"}

func envelope(t testing.TB, firstSeq uint64, n int) []byte {
	t.Helper()
	e := schemas.Envelope{Version: schemas.Version, Tenant: path.Tenant, Site: path.Site, Area: path.Area,
		Line: path.Line, Equipment: path.Equipment, Agent: "gw1"}
	ts := time.Date(2026, 11, 25, 8, 0, 0, 0, time.UTC)
	for i := range n {
		s := schemas.Sample{Seq: firstSeq + uint64(i), Tag: "speed", Role: schemas.RoleMeasurement, TS: ts.Add(time.Duration(i) * time.Second),
			Kind: schemas.NumberValue, Value: float64(i), Quality: schemas.QualityGood}
		if i == 0 {
			s.Tag, s.Role, s.State, s.Value = "state", schemas.RoleState, schemas.StateRunning, 1
		}
		e.Samples = append(e.Samples, s)
	}
	b, err := schemas.Encode(&e)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

func startBridge(t testing.TB, cfg bridge.Config) (*bridge.Bridge, *prometheus.Registry, func()) {
	t.Helper()
	if cfg.Limits.MaxAge == 0 {
		cfg.Limits.MaxAge = 10 * 365 * 24 * time.Hour // the test envelopes are of a fixed date
	}
	reg := prometheus.NewRegistry()
	b, err := bridge.New(cfg, slog.New(slog.NewTextHandler(io.Discard, nil)), reg)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- b.Run(ctx) }()
	deadline := time.Now().Add(20 * time.Second)
	for !b.Ready() {
		if time.Now().After(deadline) {
			t.Fatal("bridge not ready after 20s")
		}
		time.Sleep(20 * time.Millisecond)
	}
	stop := func() {
		cancel()
		if err := <-done; err != nil {
			t.Errorf("bridge.Run: %v", err)
		}
	}
	return b, reg, stop
}

func publisher(t *testing.T, url string) mqtt.Client {
	t.Helper()
	c := mqtt.NewClient(mqtt.NewClientOptions().AddBroker(url).SetClientID(fmt.Sprintf("pub-%d", time.Now().UnixNano())))
	if tok := c.Connect(); !tok.WaitTimeout(10*time.Second) || tok.Error() != nil {
		t.Fatalf("connect publisher: %v", tok.Error())
	}
	t.Cleanup(func() { c.Disconnect(100) })
	return c
}

func publish(t *testing.T, c mqtt.Client, topic string, payload []byte) {
	t.Helper()
	if tok := c.Publish(topic, 1, false, payload); !tok.WaitTimeout(10*time.Second) || tok.Error() != nil {
		t.Fatalf("publish: %v", tok.Error())
	}
}

// readTopic reads n records of topic from every partition, failing after timeout.
func readTopic(t *testing.T, brokers []string, topic string, n int) []kafka.Message {
	t.Helper()
	r := kafka.NewReader(kafka.ReaderConfig{Brokers: brokers, GroupID: fmt.Sprintf("check-%d", time.Now().UnixNano()),
		Topic: topic, StartOffset: kafka.FirstOffset, MaxWait: 50 * time.Millisecond})
	defer r.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	var out []kafka.Message
	for len(out) < n {
		m, err := r.ReadMessage(ctx)
		if err != nil {
			t.Fatalf("%s: read %d of %d records: %v", topic, len(out), n, err)
		}
		out = append(out, m)
	}
	return out
}

func TestBridgeWritesEnvelopesEventsAndDeadLetters(t *testing.T) {
	mq := testkit.Mosquitto(t)
	k := testkit.Kafka(t)
	_, reg, stop := startBridge(t, bridge.Config{BrokerURL: mq.URL(), ClientID: "bridge-" + t.Name(), Group: "g1",
		KafkaBrokers: k.Brokers(), Limits: schemas.Limits{MaxBytes: 64 << 10}})
	defer stop()
	pub := publisher(t, mq.URL())

	valid := envelope(t, 1, 10)
	nan := strings.Replace(string(envelope(t, 100, 2)), `"value":1,`, `"value":NaN,`, 1)
	inf := strings.Replace(string(envelope(t, 200, 2)), `"value":1,`, `"value":-1e400,`, 1)
	missing := strings.Replace(string(envelope(t, 300, 2)), `"tag":"speed",`, ``, 1)
	mistyped := strings.Replace(string(envelope(t, 400, 2)), `"seq":401`, `"seq":"401"`, 1)
	v2 := strings.Replace(string(envelope(t, 500, 2)), `"version":1`, `"version":2`, 1)
	future := strings.Replace(string(envelope(t, 700, 2)), `"ts":"2026-11-25T08:00:00Z"`, `"ts":"2100-01-01T00:00:00Z"`, 1) // a PLC clock gone wrong
	nul := strings.Replace(string(envelope(t, 600, 2)), `"tag":"speed"`, `"tag":"spe\u0000ed"`, 1)                          // PostgreSQL's text cannot hold it
	big := envelope(t, 1000, 1000)                                                                                          // over the 64 KiB limit
	other := schemas.Path{Tenant: "acme", Site: "lyon", Area: "pack", Line: "l1", Equipment: "capper-9"}
	invalid := []struct {
		topic   string
		payload []byte
		reason  schemas.Reason
	}{
		{path.Topic(), []byte("not json at all"), schemas.ReasonMalformed},
		{path.Topic(), []byte(nan), schemas.ReasonMalformed},
		{path.Topic(), []byte(inf), schemas.ReasonInvalid},
		{path.Topic(), []byte(missing), schemas.ReasonInvalid},
		{path.Topic(), []byte(mistyped), schemas.ReasonMalformed},
		{path.Topic(), []byte(v2), schemas.ReasonUnsupportedVersion},
		{path.Topic(), big, schemas.ReasonTooLarge},
		{path.Topic(), []byte(nul), schemas.ReasonInvalid},
		{path.Topic(), []byte(future), schemas.ReasonOutOfWindow},
		{other.Topic(), valid, schemas.ReasonTopicMismatch},
		{"takt/v1/acme/lyon/pack/l1/filler-1/extra", valid, schemas.ReasonTopicMismatch},
	}
	for _, c := range invalid {
		publish(t, pub, c.topic, c.payload)
	}
	publish(t, pub, path.Topic(), valid) // the bridge is still moving after all that

	got := readTopic(t, k.Brokers(), schemas.KafkaSamples, 1)
	if string(got[0].Value) != string(valid) || string(got[0].Key) != "acme/filler-1" {
		t.Fatalf("samples record: key %q value %q", got[0].Key, got[0].Value)
	}
	ev := readTopic(t, k.Brokers(), schemas.KafkaEvents, 1)
	env, err := schemas.Decode(ev[0].Value)
	if err != nil {
		t.Fatalf("events record does not decode: %v", err)
	}
	if len(env.Samples) != 1 || env.Samples[0].Role != schemas.RoleState {
		t.Fatalf("events record holds %+v, want the one state sample", env.Samples)
	}

	dead := readTopic(t, k.Brokers(), schemas.KafkaDeadLetter, len(invalid))
	byPayload := map[string]schemas.DeadLetter{}
	for _, m := range dead {
		var dl schemas.DeadLetter
		if err := json.Unmarshal(m.Value, &dl); err != nil {
			t.Fatalf("dead letter is not JSON: %v", err)
		}
		byPayload[dl.Source+"|"+string(dl.Payload)] = dl
	}
	for _, c := range invalid {
		dl, ok := byPayload["mqtt:"+c.topic+"|"+string(c.payload)]
		if !ok {
			t.Errorf("no dead letter with the original bytes for a %s message on %s", c.reason, c.topic)
			continue
		}
		if dl.Reason != c.reason || dl.Error == "" {
			t.Errorf("dead letter reason %q (%s), want %q", dl.Reason, dl.Error, c.reason)
		}
	}
	for reason, want := range map[schemas.Reason]float64{schemas.ReasonMalformed: 3, schemas.ReasonInvalid: 3,
		schemas.ReasonUnsupportedVersion: 1, schemas.ReasonTooLarge: 1, schemas.ReasonTopicMismatch: 2, schemas.ReasonOutOfWindow: 1} {
		got := testutil.ToFloat64(mustVec(t, reg, "takt_bridge_dead_letters_total", string(reason)))
		if got != want {
			t.Errorf("takt_bridge_dead_letters_total{reason=%q} = %v, want %v", reason, got, want)
		}
	}
}

// mustVec finds the counter with the given reason label in reg.
func mustVec(t *testing.T, reg *prometheus.Registry, name, reason string) prometheus.Collector {
	t.Helper()
	mfs, err := reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	for _, mf := range mfs {
		if mf.GetName() != name {
			continue
		}
		for _, m := range mf.GetMetric() {
			for _, l := range m.GetLabel() {
				if l.GetName() == "reason" && l.GetValue() == reason {
					return prometheus.NewGaugeFunc(prometheus.GaugeOpts{Name: "x"}, func() float64 { return m.GetCounter().GetValue() })
				}
			}
		}
	}
	t.Fatalf("no %s{reason=%q}", name, reason)
	return nil
}

func TestConfigErrors(t *testing.T) {
	base := bridge.Config{BrokerURL: "tcp://127.0.0.1:1", ClientID: "b", KafkaBrokers: []string{"127.0.0.1:1"}}
	cases := []struct {
		mod  func(*bridge.Config)
		want string
	}{
		{func(c *bridge.Config) { c.BrokerURL = "" }, "bridge.mqtt_url: missing"},
		{func(c *bridge.Config) { c.ClientID = "" }, "bridge.client_id: missing"},
		{func(c *bridge.Config) { c.KafkaBrokers = nil }, "kafka.brokers: missing"},
		{func(c *bridge.Config) { c.Compression = "brotli" }, `kafka.compression = "brotli"`},
		{func(c *bridge.Config) { c.QueueSize, c.BatchSize = 10, 20 }, "bridge.batch_size = 20"},
		{func(c *bridge.Config) { c.Subscription = "exclusive" }, `bridge.subscription = "exclusive"`},
		{func(c *bridge.Config) { c.Topics = []string{"plant/#"} }, `bridge.topics[0] = "plant/#"`},
		{func(c *bridge.Config) { c.DeadLetterPayload = 2 << 20 }, `dead_letter.max_payload_bytes = 2097152`},
		{func(c *bridge.Config) { c.Group = "a/b" }, `bridge.group = "a/b"`},
	}
	for _, c := range cases {
		cfg := base
		c.mod(&cfg)
		_, err := bridge.New(cfg, slog.Default(), nil)
		if err == nil || !strings.Contains(err.Error(), c.want) {
			t.Errorf("error %v, want it to contain %q", err, c.want)
		}
	}
}

// An agent's last will reaches the status topic stamped with the time the broker
// delivered it; a retained status sent again on subscribing is not news; a status
// whose topic names another agent is a dead letter.
func TestBridgeCarriesAgentWillAndBirth(t *testing.T) {
	mq := testkit.Mosquitto(t)
	k := testkit.Kafka(t)
	// A group of its own: the broker may be shared with other tests, whose bridges'
	// persistent sessions would take their share of the group's messages.
	_, reg, stop := startBridge(t, bridge.Config{BrokerURL: mq.URL(), ClientID: "bridge-" + t.Name(), Group: "g-will", KafkaBrokers: k.Brokers()})
	defer stop()

	topic := schemas.StatusTopic("acme", "gw-1")
	will, _ := json.Marshal(schemas.AgentStatus{Version: 1, Tenant: "acme", Agent: "gw-1", State: schemas.AgentOffline, Will: true,
		Incarnation: "run-1", TS: time.Now().Add(-time.Hour).UTC(), Equipment: []string{"filler-1"}})
	birth, _ := json.Marshal(schemas.AgentStatus{Version: 1, Tenant: "acme", Agent: "gw-1", State: schemas.AgentOnline,
		Incarnation: "run-1", TS: time.Now().UTC(), Equipment: []string{"filler-1"}})
	proxy, err := testkit.NewProxy(mq.Addr())
	if err != nil {
		t.Fatal(err)
	}
	defer proxy.Close()
	agent := mqtt.NewClient(mqtt.NewClientOptions().AddBroker("tcp://"+proxy.Addr()).SetClientID("agent-gw-1").SetKeepAlive(2*time.Second).
		SetBinaryWill(topic, will, 1, true).SetAutoReconnect(false))
	if tok := agent.Connect(); !tok.WaitTimeout(10*time.Second) || tok.Error() != nil {
		t.Fatalf("connect: %v", tok.Error())
	}
	if tok := agent.Publish(topic, 1, true, birth); !tok.WaitTimeout(10*time.Second) || tok.Error() != nil {
		t.Fatal(tok.Error())
	}
	// Cut the agent's connection without a DISCONNECT, as a crash would: the broker
	// sends the will.
	before := time.Now()
	proxy.Cut()

	recs := readTopic(t, k.Brokers(), schemas.KafkaStatus, 2)
	var got []schemas.AgentStatus
	for _, r := range recs {
		st, err := schemas.DecodeStatus(r.Value)
		if err != nil {
			t.Fatalf("%s: %v", r.Value, err)
		}
		if string(r.Key) != "acme/gw-1" {
			t.Fatalf("key %q", r.Key)
		}
		got = append(got, *st)
	}
	if got[0].State != schemas.AgentOnline || got[1].State != schemas.AgentOffline || !got[1].Will {
		t.Fatalf("statuses %+v", got)
	}
	if since := got[1].Since(); since.Before(before.Add(-time.Second)) || since.After(time.Now()) {
		t.Fatalf("the will took effect at %s, the connection was lost at %s", since, before)
	}

	// A bridge that subscribes anew gets the retained will again: old news, not
	// forwarded. A status on another agent's topic is a dead letter.
	_, _, stop2 := startBridge(t, bridge.Config{BrokerURL: mq.URL(), ClientID: "bridge2-" + t.Name(), Group: "g-will2", KafkaBrokers: k.Brokers(),
		Subscription: "plain"})
	defer stop2()
	publish(t, publisher(t, mq.URL()), schemas.StatusTopic("acme", "gw-2"), birth)
	dead := readTopic(t, k.Brokers(), schemas.KafkaDeadLetter, 2) // one from each bridge
	for _, d := range dead {
		var dl schemas.DeadLetter
		json.Unmarshal(d.Value, &dl)
		if dl.Reason != schemas.ReasonTopicMismatch {
			t.Fatalf("dead letter %+v", dl)
		}
	}
	time.Sleep(500 * time.Millisecond)
	if n := len(readTopic(t, k.Brokers(), schemas.KafkaStatus, 2)); n != 2 {
		t.Fatalf("%d status records", n)
	}
	mfs, _ := reg.Gather()
	found := false
	for _, mf := range mfs {
		for _, m := range mf.GetMetric() {
			if mf.GetName() == "takt_bridge_agent_status_total" && m.GetLabel()[0].GetValue() == "offline" {
				found = m.GetCounter().GetValue() == 1
			}
		}
	}
	if !found {
		t.Fatal("takt_bridge_agent_status_total{state=offline} is not 1")
	}
}

// A refused message over 1 MiB (the default limit) becomes a dead letter that fits
// Kafka: its payload cut, its size and SHA-256 kept. The bridge moves on.
func TestBridgeDeadLettersAnOversizedMessage(t *testing.T) {
	mq := testkit.Mosquitto(t)
	k := testkit.Kafka(t)
	_, reg, stop := startBridge(t, bridge.Config{BrokerURL: mq.URL(), ClientID: "bridge-" + t.Name(), Group: "g-big", KafkaBrokers: k.Brokers()})
	defer stop()
	pub := publisher(t, mq.URL())
	big := []byte(strings.Repeat("x", 3<<19)) // 1.5 MiB: base64, 2 MiB
	publish(t, pub, path.Topic(), big)
	valid := envelope(t, 1, 10)
	publish(t, pub, path.Topic(), valid)

	got := readTopic(t, k.Brokers(), schemas.KafkaSamples, 1)
	if string(got[0].Value) != string(valid) {
		t.Fatal("the valid envelope after the oversized one did not get through")
	}
	dead := readTopic(t, k.Brokers(), schemas.KafkaDeadLetter, 1)
	var dl schemas.DeadLetter
	if err := json.Unmarshal(dead[0].Value, &dl); err != nil {
		t.Fatal(err)
	}
	sum := sha256.Sum256(big)
	if dl.Reason != schemas.ReasonTooLarge || !dl.Truncated || dl.PayloadBytes != len(big) || dl.PayloadSHA256 != hex.EncodeToString(sum[:]) ||
		len(dl.Payload) != schemas.DefaultDeadLetterPayload || len(dead[0].Value) > schemas.DeadLetterBound(schemas.DefaultDeadLetterPayload) {
		t.Fatalf("dead letter: reason %s truncated %v, %d of %d bytes, %d bytes of JSON", dl.Reason, dl.Truncated, len(dl.Payload), dl.PayloadBytes, len(dead[0].Value))
	}
	if v := testutil.ToFloat64(mustVec(t, reg, "takt_bridge_dead_letters_total", string(schemas.ReasonTooLarge))); v != 1 {
		t.Fatalf("takt_bridge_dead_letters_total{reason=too_large} = %v", v)
	}
}

// The queue of unacknowledged messages is bounded by bytes too: while Kafka is away
// the bridge holds at most bridge.queue_bytes of payload, stops reading from the
// broker (which keeps the rest), says so in metrics, and catches up when Kafka is back.
func TestQueueIsBoundedByBytes(t *testing.T) {
	mq := testkit.Mosquitto(t)
	k := testkit.Kafka(t)
	limit := int64(1<<20 + 1<<10)
	_, reg, stop := startBridge(t, bridge.Config{BrokerURL: mq.URL(), ClientID: "bridge-" + t.Name(), Group: "g-bytes", KafkaBrokers: k.Brokers(),
		QueueBytes: limit, BatchSize: 1, MaxBackoff: 100 * time.Millisecond})
	defer stop()
	k.Proxy.Cut()
	pub := publisher(t, mq.URL())
	big := []byte(strings.Repeat("y", 300<<10)) // refused (not JSON): dead letters, once Kafka is back
	for range 8 {
		publish(t, pub, path.Topic(), big)
	}
	gauge := func(name string) float64 {
		mfs, _ := reg.Gather()
		for _, mf := range mfs {
			if mf.GetName() == name {
				m := mf.GetMetric()[0]
				if m.GetGauge() != nil {
					return m.GetGauge().GetValue()
				}
				return m.GetCounter().GetValue()
			}
		}
		return -1
	}
	deadline := time.Now().Add(20 * time.Second)
	for gauge("takt_bridge_queue_full_total") < 1 {
		if time.Now().After(deadline) {
			t.Fatalf("the queue never filled: %v bytes queued", gauge("takt_bridge_queue_bytes"))
		}
		time.Sleep(20 * time.Millisecond)
	}
	if q := gauge("takt_bridge_queue_bytes"); q > float64(limit) || q < 3*300<<10 {
		t.Fatalf("%v bytes queued, want at most %d (and the queue full)", q, limit)
	}
	k.Proxy.Restore()
	if n := len(readTopic(t, k.Brokers(), schemas.KafkaDeadLetter, 8)); n != 8 {
		t.Fatalf("%d of 8 messages reached Kafka", n)
	}
}

// The agent's trace context travels on: Convert puts the envelope's traceparent in
// each record's header of that name (the samples and the events record), and none
// when the envelope has none.
func TestConvertCarriesTheTraceContext(t *testing.T) {
	const tp = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01"
	e := schemas.Envelope{Version: 1, Tenant: path.Tenant, Site: path.Site, Area: path.Area, Line: path.Line, Equipment: path.Equipment,
		Agent: "gw", TraceParent: tp, Samples: []schemas.Sample{
			{Seq: 1, Tag: "speed", Role: schemas.RoleMeasurement, TS: time.Now(), Kind: schemas.NumberValue, Value: 1, Quality: schemas.QualityGood},
			{Seq: 2, Tag: "state", Role: schemas.RoleState, TS: time.Now(), Kind: schemas.NumberValue, Value: 1, Quality: schemas.QualityGood, State: schemas.StateRunning}}}
	for _, withTrace := range []bool{true, false} {
		if !withTrace {
			e.TraceParent = ""
		}
		payload, err := schemas.Encode(&e)
		if err != nil {
			t.Fatal(err)
		}
		recs, _, err := bridge.Convert(schemas.Limits{}, path.Topic(), payload)
		if err != nil || len(recs) != 2 {
			t.Fatalf("Convert: %d records, %v", len(recs), err)
		}
		for _, r := range recs {
			var got string
			for _, h := range r.Headers {
				if h.Key == "traceparent" {
					got = string(h.Value)
				}
			}
			if want := map[bool]string{true: tp, false: ""}[withTrace]; got != want {
				t.Errorf("%s record: traceparent header %q, want %q", r.Topic, got, want)
			}
		}
	}
}

// Messages the broker kept for the bridge's session while it was away arrive right
// after the CONNACK, before the bridge has subscribed again: each must still be
// written and acknowledged (a message no handler takes is left unacknowledged by
// paho, in flight at the broker until some later reconnect: lost meanwhile, and a
// slot of the broker's in-flight window taken).
func TestMessagesKeptWhileAwayAreAllTaken(t *testing.T) {
	mq := testkit.Mosquitto(t)
	k := testkit.Kafka(t)
	cfg := bridge.Config{BrokerURL: mq.URL(), ClientID: "bridge-" + t.Name(), Group: "away", KafkaBrokers: k.Brokers()}
	_, _, stop := startBridge(t, cfg)
	stop() // the session and its subscription stay at the broker
	pub := publisher(t, mq.URL())
	const n = 400
	for i := range n {
		publish(t, pub, path.Topic(), envelope(t, uint64(1+10*i), 10))
	}
	_, _, stop = startBridge(t, cfg)
	defer stop()
	seen := map[string]bool{}
	for _, m := range readTopic(t, k.Brokers(), schemas.KafkaSamples, n) {
		seen[string(m.Value)] = true
	}
	if len(seen) != n {
		t.Fatalf("%d distinct envelopes of %d in Kafka", len(seen), n)
	}
}
