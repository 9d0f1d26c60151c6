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

// TestTopicPrefixSeparatesEnvironments: staging and prod share one Kafka cluster
// through kafka.topic_prefix; each environment's ingest reads and writes only its
// own topics and stores only its own data, and nothing lands on the bare topics.
func TestTopicPrefixSeparatesEnvironments(t *testing.T) {
	k, err := testkit.StartKafka(t.TempDir(), testkit.KafkaOptions{TopicPrefixes: []string{"staging.", "prod."}})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { k.Close() })
	mq := testkit.Mosquitto(t)
	dir := t.TempDir()
	run := fmt.Sprint(time.Now().UnixNano())
	dbs := map[string]*testkit.Database{}
	for _, env := range []string{"staging", "prod"} {
		db := testkit.NewDatabase(t)
		dbs[env] = db
		cfg := filepath.Join(dir, env+".yaml")
		os.WriteFile(cfg, []byte(fmt.Sprintf("http_addr: 127.0.0.1:0\nkafka:\n  topic_prefix: %s.\nbridge:\n  client_id: %s-%s\n  group: %s-%s\n  subscription: plain\n  topics: ['takt/v1/%s%s/#']\nsink:\n  group: sink-%s\n  linger: 20ms\n",
			env, env, run, env, run, env, run, env)), 0o600)
		logPath := filepath.Join(dir, env+".log")
		testkit.StartChild(t, logPath, "TAKT_INGEST_CHILD=-c "+cfg+" all", "DATABASE_URL="+db.URL, "TAKT_MQTT_URL="+mq.URL(),
			"TAKT_KAFKA_BROKERS="+strings.Join(k.Brokers(), ","))
		for deadline := time.Now().Add(30 * time.Second); ; time.Sleep(20 * time.Millisecond) {
			if b, _ := os.ReadFile(logPath); strings.Contains(string(b), "connected and subscribed") {
				break
			}
			if time.Now().After(deadline) {
				t.Fatalf("%s bridge did not subscribe", env)
			}
		}
	}
	p := &pipeline{mq: mq, k: k, dir: dir, group: run}
	for _, env := range []string{"staging", "prod"} {
		a := p.agent(t, env+"-gw")
		tenant := env + run
		var envs []envelope
		for i := range 5 {
			e := schemas.Envelope{Version: 1, Tenant: tenant, Site: "s", Area: "a", Line: "l", Equipment: "e", Agent: "gw",
				Samples: []schemas.Sample{{Seq: uint64(i + 1), Tag: "t", Role: schemas.RoleMeasurement, TS: time.Now().UTC(), Kind: schemas.NumberValue, Value: 1, Quality: schemas.QualityGood}}}
			b, _ := schemas.Encode(&e)
			envs = append(envs, envelope{topic: e.Path().Topic(), payload: b})
		}
		a.send(envs, 0)
	}
	for env, db := range dbs {
		pool := db.Pool(t)
		deadline := time.Now().Add(30 * time.Second)
		for {
			var mine, others int
			pool.QueryRow(context.Background(), `SELECT count(*) FILTER (WHERE tenant_id = $1), count(*) FILTER (WHERE tenant_id <> $1) FROM samples`, env+run).Scan(&mine, &others)
			if others != 0 {
				t.Fatalf("%s stored %d samples of the other environment", env, others)
			}
			if mine == 5 {
				break
			}
			if time.Now().After(deadline) {
				t.Fatalf("%s stored %d of its 5 samples", env, mine)
			}
			time.Sleep(50 * time.Millisecond)
		}
	}
	conn, err := kafka.Dial("tcp", k.Brokers()[0])
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	for topic, want := range map[string]bool{"staging." + schemas.KafkaSamples: true, "prod." + schemas.KafkaSamples: true, schemas.KafkaSamples: false} {
		parts, err := conn.ReadPartitions(topic)
		if err != nil {
			t.Fatal(err)
		}
		total := int64(0)
		for _, part := range parts {
			pc, err := kafka.DialLeader(context.Background(), "tcp", k.Brokers()[0], topic, part.ID)
			if err != nil {
				t.Fatal(err)
			}
			last, _ := pc.ReadLastOffset()
			pc.Close()
			total += last
		}
		if (total > 0) != want {
			t.Errorf("topic %s holds %d records; want records: %v", topic, total, want)
		}
	}
}
