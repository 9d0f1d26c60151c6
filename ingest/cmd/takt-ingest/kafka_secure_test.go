package main

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"takt.dev/testkit"
)

// TestKafkaOverTLSAndSASL runs the bridge, the sink and its dead-letter indexer as a
// real process, and the deadletter command, against a Kafka that speaks TLS only and
// lets in only SASL users (SCRAM-SHA-512 for takt-ingest, PLAIN for an operator):
// everything flows; a wrong password is refused with a message that says so.
func TestKafkaOverTLSAndSASL(t *testing.T) {
	dir := t.TempDir()
	k, ca := testkit.SecureKafka(t, testkit.KafkaUser{Mechanism: "SCRAM-SHA-512", Name: "takt-ingest", Password: "ingest-secret"},
		testkit.KafkaUser{Mechanism: "PLAIN", Name: "operator", Password: "op-secret"})
	p := &pipeline{mq: testkit.Mosquitto(t), k: k, db: testkit.NewDatabase(t), dir: dir, group: fmt.Sprintf("g%d", time.Now().UnixNano())}
	p.pool = p.db.Pool(t)

	kafkaBlock := func(mechanism, user, password string) string {
		return fmt.Sprintf("kafka:\n  tls: {enabled: true, ca_file: %s}\n  sasl: {mechanism: %s, username: %s, password: '%s'}\n", ca, mechanism, user, password)
	}
	cfgFile := filepath.Join(dir, "ingest.yaml")
	os.WriteFile(cfgFile, []byte(fmt.Sprintf("http_addr: 127.0.0.1:0\n%sbridge:\n  client_id: %s-b\n  group: %s\nsink:\n  linger: 20ms\n",
		kafkaBlock("SCRAM-SHA-512", "takt-ingest", "${TAKT_TEST_KAFKA_PASSWORD}"), p.group, p.group)), 0o600)
	logPath := filepath.Join(dir, "ingest.log")
	testkit.StartChild(t, logPath, "TAKT_INGEST_CHILD=-c "+cfgFile+" all", "DATABASE_URL="+p.db.URL, "TAKT_MQTT_URL="+p.mq.URL(),
		"TAKT_KAFKA_BROKERS="+strings.Join(k.Brokers(), ","), "TAKT_TEST_KAFKA_PASSWORD=ingest-secret")
	for deadline := time.Now().Add(30 * time.Second); ; time.Sleep(20 * time.Millisecond) {
		if b, _ := os.ReadFile(logPath); strings.Contains(string(b), "connected and subscribed") {
			break
		}
		if time.Now().After(deadline) {
			t.Fatal("the bridge did not subscribe")
		}
	}
	a := p.agent(t, "gw1")
	a.send(a.envelopes(t, 1, 20, 10), 0)
	a.send([]envelope{{topic: "takt/v1/acme/lyon/pack/l1/filler-1", payload: []byte("not json")}}, 0)
	p.expectExactly(t, map[string]int{"gw1": 200})
	// The sink's dead-letter indexer reads over TLS and SASL too.
	deadline := time.Now().Add(30 * time.Second)
	for {
		var n int
		p.pool.QueryRow(context.Background(), `SELECT count(*) FROM dead_letter`).Scan(&n)
		if n == 1 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatal("the dead letter was not indexed")
		}
		time.Sleep(50 * time.Millisecond)
	}

	opFile := filepath.Join(dir, "operator.yaml")
	env := func(k2 string) string {
		return map[string]string{"TAKT_KAFKA_BROKERS": strings.Join(k.Brokers(), ",")}[k2]
	}
	os.WriteFile(opFile, []byte(kafkaBlock("PLAIN", "operator", "op-secret")), 0o600)
	var out bytes.Buffer
	if err := run(context.Background(), []string{"-c", opFile, "deadletter", "list"}, env, &out, io.Discard); err != nil || !strings.Contains(out.String(), "malformed") {
		t.Fatalf("deadletter list over TLS and SASL PLAIN: %v\n%s", err, out.String())
	}
	os.WriteFile(opFile, []byte(kafkaBlock("PLAIN", "operator", "wrong")), 0o600)
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	err := run(ctx, []string{"-c", opFile, "deadletter", "list"}, env, io.Discard, io.Discard)
	if err == nil || !strings.Contains(strings.ToLower(err.Error()), "sasl") {
		t.Fatalf("a wrong password: %v, want an error naming SASL", err)
	}
	os.WriteFile(opFile, []byte("kafka:\n  sasl: {mechanism: SCRAM-SHA-1, username: x}\n"), 0o600)
	if err := run(context.Background(), []string{"-c", opFile, "validate"}, env, io.Discard, io.Discard); err == nil || !strings.Contains(err.Error(), "kafka.sasl.mechanism") {
		t.Fatalf("an unknown mechanism: %v", err)
	}
}
