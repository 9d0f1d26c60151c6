package main

import (
	"bufio"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	mqtt "github.com/eclipse/paho.mqtt.golang"
	"github.com/segmentio/kafka-go"

	"takt.dev/schemas"
	"takt.dev/testkit"
)

// poison is one hostile input and what Takt must make of it.
type poison struct {
	name  string
	stage string // bridge: published on MQTT; sink: written to the samples topic; aggregator: to the events or status topic
	topic string // MQTT topic (bridge) or Kafka topic
	body  []byte
	want  schemas.Reason // the dead letter's reason, or the aggregator's refusal label
}

// hostileEnvelope returns a valid envelope of equipment filler-1 as JSON, changed by
// edit (which gets the decoded JSON object to mangle).
func hostileEnvelope(t *testing.T, edit func(e map[string]any, s map[string]any)) []byte {
	t.Helper()
	s := map[string]any{"seq": 1, "tag": "speed", "role": "measurement", "ts": time.Now().UTC().Format(time.RFC3339Nano), "quality": "good", "value": 1.5}
	e := map[string]any{"version": 1, "tenant": "hostile", "site": "s", "area": "a", "line": "l", "equipment": "filler-1", "agent": "rogue",
		"samples": []any{s}}
	edit(e, s)
	b, err := json.Marshal(e)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

const hostileTopic = "takt/v1/hostile/s/a/l/filler-1"

func poisons(t *testing.T) []poison {
	env := func(edit func(e, s map[string]any)) []byte { return hostileEnvelope(t, edit) }
	many := func(n int) []byte {
		return env(func(e, s map[string]any) {
			var ss []any
			for i := range n {
				c := map[string]any{}
				for k, v := range s {
					c[k] = v
				}
				c["seq"] = i + 1
				ss = append(ss, c)
			}
			e["samples"] = ss
		})
	}
	huge := env(func(e, s map[string]any) {
		e["samples"] = []any{s}
		s["text"] = strings.Repeat("x", 2200<<10)
		delete(s, "value")
	})
	nulText := env(func(e, s map[string]any) { s["text"] = "lot\x00"; delete(s, "value"); e["agent"] = "rogue-db" })
	return []poison{
		{"not JSON", "bridge", hostileTopic, []byte("hello plant"), schemas.ReasonMalformed},
		{"empty", "bridge", hostileTopic, []byte{}, schemas.ReasonMalformed},
		{"JSON array", "bridge", hostileTopic, []byte(`[1,2,3]`), schemas.ReasonMalformed},
		{"JSON null", "bridge", hostileTopic, []byte(`null`), schemas.ReasonUnsupportedVersion},
		{"cut short", "bridge", hostileTopic, env(func(e, s map[string]any) {})[:60], schemas.ReasonMalformed},
		{"binary", "bridge", hostileTopic, []byte{0xff, 0xfe, 0x00, 0x01, 0x80}, schemas.ReasonMalformed},
		{"nested 100k deep", "bridge", hostileTopic, []byte(strings.Repeat("[", 100_000)), schemas.ReasonMalformed},
		{"version 2", "bridge", hostileTopic, env(func(e, s map[string]any) { e["version"] = 2 }), schemas.ReasonUnsupportedVersion},
		{"no version", "bridge", hostileTopic, env(func(e, s map[string]any) { delete(e, "version") }), schemas.ReasonUnsupportedVersion},
		{"unknown field", "bridge", hostileTopic, env(func(e, s map[string]any) { e["priority"] = "high" }), schemas.ReasonMalformed},
		{"unknown sample field", "bridge", hostileTopic, env(func(e, s map[string]any) { s["unit"] = "m/s" }), schemas.ReasonMalformed},
		{"no samples", "bridge", hostileTopic, env(func(e, s map[string]any) { e["samples"] = []any{} }), schemas.ReasonInvalid},
		{"samples not an array", "bridge", hostileTopic, env(func(e, s map[string]any) { e["samples"] = "many" }), schemas.ReasonMalformed},
		{"10001 samples", "bridge", hostileTopic, many(10_001), schemas.ReasonTooLarge},
		{"over max_message_bytes (2 MiB)", "bridge", hostileTopic, huge, schemas.ReasonTooLarge},
		{"value as text", "bridge", hostileTopic, env(func(e, s map[string]any) { s["value"] = "1.5" }), schemas.ReasonInvalid},
		{"value 1e400", "bridge", hostileTopic, []byte(strings.Replace(string(env(func(e, s map[string]any) { s["value"] = 7.25 })), "7.25", "1e400", 1)), schemas.ReasonInvalid},
		{"negative counter", "bridge", hostileTopic, env(func(e, s map[string]any) { s["role"], s["counter"], s["value"] = "counter", "total", -3 }), schemas.ReasonInvalid},
		{"seq 0", "bridge", hostileTopic, env(func(e, s map[string]any) { s["seq"] = 0 }), schemas.ReasonInvalid},
		{"seq 2^63", "bridge", hostileTopic, env(func(e, s map[string]any) { s["seq"] = uint64(1) << 63 }), schemas.ReasonInvalid},
		{"seq going back", "bridge", hostileTopic, env(func(e, s map[string]any) {
			s2 := map[string]any{"seq": 1, "tag": "b", "role": "measurement", "ts": s["ts"], "quality": "good", "value": 2}
			s["seq"] = 5
			e["samples"] = []any{s, s2}
		}), schemas.ReasonInvalid},
		{"NUL in tag", "bridge", hostileTopic, env(func(e, s map[string]any) { s["tag"] = "a\x00b" }), schemas.ReasonInvalid},
		{"tag of 300 bytes", "bridge", hostileTopic, env(func(e, s map[string]any) { s["tag"] = strings.Repeat("t", 300) }), schemas.ReasonInvalid},
		{"text of 5000 bytes", "bridge", hostileTopic, env(func(e, s map[string]any) { s["text"] = strings.Repeat("t", 5000); delete(s, "value") }), schemas.ReasonInvalid},
		{"ts not RFC 3339", "bridge", hostileTopic, env(func(e, s map[string]any) { s["ts"] = "2026-13-01 08:00" }), schemas.ReasonInvalid},
		{"ts in 1969", "bridge", hostileTopic, env(func(e, s map[string]any) { s["ts"] = "1969-12-31T23:59:59Z" }), schemas.ReasonInvalid},
		{"ts 200 days old", "bridge", hostileTopic, env(func(e, s map[string]any) { s["ts"] = time.Now().UTC().AddDate(0, 0, -200).Format(time.RFC3339) }), schemas.ReasonOutOfWindow},
		{"ts a day ahead", "bridge", hostileTopic, env(func(e, s map[string]any) { s["ts"] = time.Now().UTC().AddDate(0, 0, 1).Format(time.RFC3339) }), schemas.ReasonOutOfWindow},
		{"ts in 9999", "bridge", hostileTopic, env(func(e, s map[string]any) { s["ts"] = "9999-12-31T23:59:59Z" }), schemas.ReasonOutOfWindow},
		{"unknown role", "bridge", hostileTopic, env(func(e, s map[string]any) { s["role"] = "alarm" }), schemas.ReasonInvalid},
		{"state without category", "bridge", hostileTopic, env(func(e, s map[string]any) { s["role"], s["value"] = "state", 3 }), schemas.ReasonInvalid},
		{"tenant with a slash", "bridge", hostileTopic, env(func(e, s map[string]any) { e["tenant"] = "a/b" }), schemas.ReasonInvalid},
		{"other equipment than the topic", "bridge", hostileTopic, env(func(e, s map[string]any) { e["equipment"] = "capper-1" }), schemas.ReasonTopicMismatch},
		{"topic too short", "bridge", "takt/v1/hostile/s", env(func(e, s map[string]any) {}), schemas.ReasonTopicMismatch},
		{"another tenant's topic", "bridge", "takt/v1/victim/s/a/l/filler-1", env(func(e, s map[string]any) {}), schemas.ReasonTopicMismatch},
		{"not JSON, to Kafka", "sink", schemas.KafkaSamples, []byte("{{{"), schemas.ReasonMalformed},
		{"NUL in a text, to Kafka", "sink", schemas.KafkaSamples, nulText, schemas.ReasonRejectedByDatabase},
		{"seq 2^63, to Kafka", "sink", schemas.KafkaSamples, env(func(e, s map[string]any) { s["seq"] = uint64(1) << 63 }), schemas.ReasonInvalid},
		{"identity reused, to Kafka", "sink", schemas.KafkaSamples, env(func(e, s map[string]any) {
			e["agent"], e["incarnation"] = "sentinel", "run-1" // the sentinel's first envelope is seq 1 with one sample
			s2 := map[string]any{"seq": 2, "tag": "b", "role": "measurement", "ts": s["ts"], "quality": "good", "value": 2}
			e["samples"] = []any{s, s2}
		}), schemas.ReasonIdentityConflict},
		{"not JSON, to events", "aggregator", schemas.KafkaEvents, []byte("\x00\x01"), schemas.ReasonMalformed},
		{"invalid envelope, to events", "aggregator", schemas.KafkaEvents, env(func(e, s map[string]any) { s["seq"] = 0 }), schemas.ReasonInvalid},
		{"invalid status", "aggregator", schemas.KafkaStatus, []byte(`{"version":1,"tenant":"hostile","agent":"a b","state":"zombie"}`), "status"},
	}
}

// TestHostileInput sends every poison through real processes (takt-ingest bridge and
// sink, takt-aggregator), each followed by a valid envelope, and checks: the poison
// is refused with its reason, its dead letter keeps its exact bytes' SHA-256 (and
// size), the valid envelope right after it is stored within seconds, and the
// processes' memory stays bounded. Broken agent configuration files go through
// takt-agent validate.
func TestHostileInput(t *testing.T) {
	bin := buildBinaries(t)
	ctx := context.Background()
	dir := t.TempDir()
	db := testkit.NewDatabase(t)
	pool := db.Pool(t)
	mq := testkit.Mosquitto(t)
	k := testkit.Kafka(t, testkit.KafkaOptions{Partitions: 2})
	ingestPort, _ := testkit.FreePort()
	aggPort, _ := testkit.FreePort()
	ingestCfg := filepath.Join(dir, "ingest.yaml")
	os.WriteFile(ingestCfg, []byte(fmt.Sprintf("http_addr: 127.0.0.1:%d\nmax_message_bytes: 2097152\nbridge:\n  client_id: hostile-bridge\n  subscription: plain\n  topics: ['takt/v1/#']\nsink:\n  linger: 20ms\n", ingestPort)), 0o644)
	aggCfg := filepath.Join(dir, "aggregator.yaml")
	os.WriteFile(aggCfg, []byte(fmt.Sprintf("http_addr: 127.0.0.1:%d\nlinger: 20ms\n", aggPort)), 0o644)
	env := []string{"DATABASE_URL=" + db.URL, "TAKT_PII_KEYS=" + testkit.PIIKeys(), "TAKT_KAFKA_BROKERS=" + strings.Join(k.Brokers(), ","), "TAKT_MQTT_URL=" + mq.URL()}
	var procs []*child
	t.Cleanup(func() {
		for _, p := range procs {
			p.stop()
			if t.Failed() {
				out, _ := os.ReadFile(p.log)
				if len(out) > 3000 {
					out = out[len(out)-3000:]
				}
				t.Logf("%s:\n%s", p.log, out)
			}
		}
	})
	for _, p := range []struct{ name, cfg string }{{"takt-ingest", ingestCfg}, {"takt-aggregator", aggCfg}} {
		args := []string{"-c", p.cfg, "all"}
		if p.name == "takt-aggregator" {
			args[2] = "run"
		}
		c, err := startChild(filepath.Join(bin, p.name), filepath.Join(dir, p.name+".log"), env, args...)
		if err != nil {
			t.Fatal(err)
		}
		procs = append(procs, c)
	}
	ingest, agg := procs[0], procs[1]
	if err := waitForLog(ctx, filepath.Join(dir, "takt-ingest.log"), "connected and subscribed", 30*time.Second); err != nil {
		t.Fatal(err)
	}

	// Every dead letter, by the SHA-256 of what it refused.
	var mu sync.Mutex
	letters := map[string]schemas.DeadLetter{}
	go func() {
		r := kafka.NewReader(kafka.ReaderConfig{Brokers: k.Brokers(), GroupID: "hostile-check", Topic: schemas.KafkaDeadLetter,
			StartOffset: kafka.FirstOffset, MaxWait: 50 * time.Millisecond, MaxBytes: 16 << 20})
		defer r.Close()
		for {
			m, err := r.ReadMessage(ctx)
			if err != nil {
				return
			}
			var dl schemas.DeadLetter
			if json.Unmarshal(m.Value, &dl) == nil {
				mu.Lock()
				letters[dl.PayloadSHA256] = dl
				mu.Unlock()
			}
		}
	}()

	o := mqtt.NewClientOptions().AddBroker(mq.URL()).SetClientID("hostile-client")
	client := mqtt.NewClient(o)
	if tok := client.Connect(); !tok.WaitTimeout(10*time.Second) || tok.Error() != nil {
		t.Fatal(tok.Error())
	}
	defer client.Disconnect(100)
	w := &kafka.Writer{Addr: kafka.TCP(k.Brokers()...), Balancer: &kafka.Hash{}, RequiredAcks: kafka.RequireAll, BatchTimeout: time.Millisecond, BatchBytes: 8 << 20}
	defer w.Close()

	seq := uint64(0)
	sentinel := func() uint64 {
		seq++
		e := schemas.Envelope{Version: 1, Tenant: "hostile", Site: "s", Area: "a", Line: "l", Equipment: "filler-1", Agent: "sentinel", Incarnation: "run-1",
			Samples: []schemas.Sample{{Seq: seq, Tag: "state", Role: schemas.RoleState, TS: time.Now().UTC().Add(time.Duration(seq) * time.Millisecond),
				Kind: schemas.NumberValue, Value: 1, State: schemas.StateRunning, Quality: schemas.QualityGood}}}
		b, _ := schemas.Encode(&e)
		if tok := client.Publish(hostileTopic, 1, false, b); !tok.WaitTimeout(10*time.Second) || tok.Error() != nil {
			t.Fatal(tok.Error())
		}
		return seq
	}
	within := func(what string, d time.Duration, ok func() bool) {
		t.Helper()
		deadline := time.Now().Add(d)
		for !ok() {
			if time.Now().After(deadline) {
				t.Fatalf("after %s: %s", d, what)
			}
			time.Sleep(20 * time.Millisecond)
		}
	}
	sentinel() // the identity the "identity reused" poison reuses
	within("the first valid envelope stored", 30*time.Second, func() bool {
		var n int
		pool.QueryRow(ctx, `SELECT count(*) FROM samples WHERE agent = 'sentinel'`).Scan(&n)
		return n == 1
	})

	cases := poisons(t)
	bridgeOrSink := 0
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			refusedBefore := metric(t, aggPort, "takt_aggregator_refused_records_total", `reason="`+string(c.want)+`"`)
			switch c.stage {
			case "bridge":
				if tok := client.Publish(c.topic, 1, false, c.body); !tok.WaitTimeout(10*time.Second) || tok.Error() != nil {
					t.Fatal(tok.Error())
				}
			default:
				if err := w.WriteMessages(ctx, kafka.Message{Topic: c.topic, Key: []byte("hostile/filler-1"), Value: c.body}); err != nil {
					t.Fatal(err)
				}
			}
			s := sentinel()
			start := time.Now()
			within(fmt.Sprintf("the valid envelope published after the poison (seq %d) is not stored", s), 10*time.Second, func() bool {
				var n int
				pool.QueryRow(ctx, `SELECT count(*) FROM samples WHERE agent = 'sentinel' AND seq = $1`, s).Scan(&n)
				return n == 1
			})
			stored := time.Since(start)
			if c.stage == "aggregator" {
				within("the aggregator did not count the refusal", 10*time.Second, func() bool {
					return metric(t, aggPort, "takt_aggregator_refused_records_total", `reason="`+string(c.want)+`"`) == refusedBefore+1
				})
				t.Logf("refused by the aggregator as %s; next envelope stored in %s", c.want, stored.Round(time.Millisecond))
				return
			}
			bridgeOrSink++
			sum := sha256.Sum256(c.body)
			digest := hex.EncodeToString(sum[:])
			var dl schemas.DeadLetter
			within("no dead letter with the poison's SHA-256", 10*time.Second, func() bool {
				mu.Lock()
				defer mu.Unlock()
				var ok bool
				dl, ok = letters[digest]
				return ok
			})
			if dl.Reason != c.want || dl.PayloadBytes != len(c.body) {
				t.Fatalf("dead letter: reason %s, %d bytes (%s); want %s, %d bytes", dl.Reason, dl.PayloadBytes, dl.Error, c.want, len(c.body))
			}
			if !dl.Truncated && string(dl.Payload) != string(c.body) {
				t.Fatal("the dead letter's payload is not the poison's bytes")
			}
			t.Logf("%s: %.80s; next envelope stored in %s", dl.Reason, dl.Error, stored.Round(time.Millisecond))
		})
	}
	if len(cases) < 30 {
		t.Fatalf("%d poison cases, want at least 30", len(cases))
	}
	// Memory stays bounded: a 1 MiB message and a 10,001-sample one went through.
	for _, p := range []*child{ingest, agg} {
		if kb := rssKiB(p.cmd.Process.Pid); kb <= 0 || kb > 512<<10 {
			t.Errorf("%s: resident memory %d KiB after the poisons, want under 512 MiB", filepath.Base(p.cmd.Path), kb)
		} else {
			t.Logf("%s: resident memory %d KiB after %d poisons", filepath.Base(p.cmd.Path), kb, len(cases))
		}
	}

	// Broken agent configuration files: every fault named, no crash.
	for name, c := range map[string]struct{ yaml, want string }{
		"binary garbage":        {"\x00\x01\x02\xff", "yaml"},
		"tab indentation":       {"agent:\n\tid: gw\n", "line 2"},
		"misspelt key":          {"agent: {id: gw, tenant: t}\nmqtt: {url: 'tcp://x:1', securty_policy: None}\n", "securty_policy"},
		"register out of range": {"agent: {id: gw, tenant: t}\nmqtt: {url: 'tcp://x:1'}\nequipment:\n  - {site: s, area: a, line: l, code: e, modbus: [{name: p, url: 'tcp://x:502', tags: [{name: t, address: 70000}]}]}\n", "70000"},
		"huge document":         {"agent:\n  id: " + strings.Repeat("x", 2<<20) + "\n", "agent.id"},
	} {
		file := filepath.Join(dir, strings.ReplaceAll(name, " ", "-")+".yaml")
		os.WriteFile(file, []byte(c.yaml), 0o644)
		out, err := exec.Command(filepath.Join(bin, "takt-agent"), "validate", "-c", file).CombinedOutput()
		if err == nil || !strings.Contains(string(out), c.want) || strings.Contains(string(out), "panic") {
			t.Errorf("takt-agent validate of %s: err %v, output %.300q; want a refusal naming %q", name, err, out, c.want)
		}
	}
}

// metric reads the sum of a metric's series matching filter from a service's /metrics.
func metric(t testing.TB, port int, name, filter string) float64 {
	resp, err := http.Get("http://127.0.0.1:" + strconv.Itoa(port) + "/metrics")
	if err != nil {
		return -1
	}
	defer resp.Body.Close()
	sum := 0.0
	sc := bufio.NewScanner(resp.Body)
	for sc.Scan() {
		line := sc.Text()
		if (strings.HasPrefix(line, name+" ") || strings.HasPrefix(line, name+"{")) && strings.Contains(line, filter) {
			v, _ := strconv.ParseFloat(line[strings.LastIndexByte(line, ' ')+1:], 64)
			sum += v
		}
	}
	return sum
}

func rssKiB(pid int) int {
	b, _ := os.ReadFile(fmt.Sprintf("/proc/%d/status", pid))
	for _, line := range strings.Split(string(b), "\n") {
		if f := strings.Fields(line); len(f) >= 2 && f[0] == "VmRSS:" {
			n, _ := strconv.Atoi(f[1])
			return n
		}
	}
	return -1
}
