package service

import (
	"context"
	"io"
	"log/slog"
	"strings"
	"testing"
	"time"

	"github.com/jackc/pgx/v5/pgxpool"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/segmentio/kafka-go"

	"takt.dev/plant/store"
	"takt.dev/schemas"
	"takt.dev/servicekit/kafkalink"
	"takt.dev/testkit"
)

// The aggregator consumes over TLS with SASL (SCRAM-SHA-256), as its kafka: block
// says, from a broker that lets nothing else in.
func TestConsumesOverTLSAndSASL(t *testing.T) {
	k, ca := testkit.SecureKafka(t, testkit.KafkaUser{Mechanism: "SCRAM-SHA-256", Name: "takt-aggregator", Password: "agg-secret"})
	link := kafkalink.Link{Brokers: k.Brokers()}
	link.TLS.Enabled, link.TLS.CAFile = true, ca
	link.SASL.Mechanism, link.SASL.Username, link.SASL.Password = "SCRAM-SHA-256", "takt-aggregator", "agg-secret"
	ktls, ksasl, err := link.Parts()
	if err != nil {
		t.Fatal(err)
	}

	pool := testkit.NewDatabase(t).Pool(t)
	register(t, pool)
	var seq uint64
	envs := script(h8, h8.Add(time.Hour), h8.Add(20*time.Minute), h8.Add(30*time.Minute), &seq)
	transport, _ := link.Transport()
	w := &kafka.Writer{Addr: kafka.TCP(k.Brokers()...), Transport: transport, Topic: schemas.KafkaEvents, Balancer: &kafka.Hash{}, RequiredAcks: kafka.RequireAll}
	defer w.Close()
	produceWith(t, w, envs)
	runConfig(t, pool, Config{KafkaBrokers: k.Brokers(), KafkaTLS: ktls, KafkaSASL: ksasl, Group: "agg"})
	window(t, pool, "hour", h8, func(r row) bool { return r.total == 2990 })
}

// With kafka.topic_prefix the aggregator reads its environment's topics only.
func TestTopicPrefix(t *testing.T) {
	k, err := testkit.StartKafka(t.TempDir(), testkit.KafkaOptions{TopicPrefixes: []string{"staging."}})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { k.Close() })
	pool := testkit.NewDatabase(t).Pool(t)
	register(t, pool)
	var seq uint64
	envs := script(h8, h8.Add(time.Hour), h8.Add(20*time.Minute), h8.Add(30*time.Minute), &seq)
	w := &kafka.Writer{Addr: kafka.TCP(k.Brokers()...), Topic: "staging." + schemas.KafkaEvents, Balancer: &kafka.Hash{}, RequiredAcks: kafka.RequireAll, BatchTimeout: time.Millisecond}
	defer w.Close()
	produceWith(t, w, envs)
	runConfig(t, pool, Config{KafkaBrokers: k.Brokers(), TopicPrefix: "staging.", Group: "agg"})
	window(t, pool, "hour", h8, func(r row) bool { return r.total == 2990 })
}

// A login role outside takt_aggregator could not write a single window: the
// aggregator refuses to start and names the group role; as a member (no BYPASSRLS,
// no ownership: migration 00019's policy admits every tenant) it computes.
func TestAggregatorRole(t *testing.T) {
	k := testkit.Kafka(t)
	db := testkit.NewDatabase(t)
	owner := db.Pool(t)
	register(t, owner)
	ctx := context.Background()
	as := func(attrs string) *pgxpool.Pool { return db.Login(t, attrs) }
	svc, err := New(Config{KafkaBrokers: k.Brokers()}, &store.Store{Pool: as("IN ROLE takt_app")}, slog.New(slog.NewTextHandler(io.Discard, nil)), prometheus.NewRegistry(), time.Now)
	if err != nil {
		t.Fatal(err)
	}
	rctx, cancel := context.WithTimeout(ctx, 30*time.Second)
	defer cancel()
	if err := svc.Run(rctx); err == nil || !strings.Contains(err.Error(), "make it a member of takt_aggregator") {
		t.Fatalf("aggregator as a role outside takt_aggregator: %v, want a refusal naming takt_aggregator", err)
	}
	var seq uint64
	produce(t, k.Brokers(), script(h8, h8.Add(time.Hour), h8.Add(20*time.Minute), h8.Add(30*time.Minute), &seq))
	runConfig(t, as("IN ROLE takt_aggregator"), Config{KafkaBrokers: k.Brokers(), Group: "agg"})
	window(t, owner, "hour", h8, func(r row) bool { return r.total == 2990 })
}
