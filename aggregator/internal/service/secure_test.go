package service

import (
	"testing"
	"time"

	"github.com/segmentio/kafka-go"

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
