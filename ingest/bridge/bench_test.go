package bridge_test

import (
	"fmt"
	"testing"
	"time"

	mqtt "github.com/eclipse/paho.mqtt.golang"
	"github.com/prometheus/client_golang/prometheus"

	"takt.dev/ingest/bridge"
	"takt.dev/testkit"
)

const (
	benchEnvelopes = 2000
	benchPer       = 200
)

var benchBridge struct {
	done bool
	rate float64
}

// BenchmarkBridge measures how fast one bridge drains a backlog: 2,000 envelopes of
// 200 samples (400,000 samples) queued at Mosquitto for the bridge's persistent
// session, then moved to kfake (acks=all, zstd) and acknowledged, timed from the
// bridge's start until it has acknowledged the last one. One drain is the
// measurement; it is reported for every b.N.
func BenchmarkBridge(b *testing.B) {
	if !benchBridge.done {
		benchBridge.rate = measureBridge(b)
		benchBridge.done = true
	}
	for b.Loop() {
	}
	b.ReportMetric(benchBridge.rate, "ingest_bridge_samples_per_s=samples/s")
}

func measureBridge(b *testing.B) float64 {
	mq := testkit.Mosquitto(b)
	k := testkit.Kafka(b, testkit.KafkaOptions{Partitions: 4})
	cfg := bridge.Config{BrokerURL: mq.URL(), ClientID: fmt.Sprint("bench-", time.Now().UnixNano()), Group: "bench",
		KafkaBrokers: k.Brokers(), Subscription: "plain"}

	// Register the persistent session, then go away so the broker queues for it.
	_, _, stop := startBridge(b, cfg)
	stop()

	pub := mqtt.NewClient(mqtt.NewClientOptions().AddBroker(mq.URL()).SetClientID("bench-pub"))
	if tok := pub.Connect(); !tok.WaitTimeout(10*time.Second) || tok.Error() != nil {
		b.Fatal(tok.Error())
	}
	var toks []mqtt.Token
	for i := range benchEnvelopes {
		toks = append(toks, pub.Publish(path.Topic(), 1, false, envelope(b, uint64(i*benchPer+1), benchPer)))
	}
	for _, tok := range toks {
		if !tok.WaitTimeout(60*time.Second) || tok.Error() != nil {
			b.Fatalf("publish: %v", tok.Error())
		}
	}
	pub.Disconnect(100)

	start := time.Now()
	_, reg, stop := startBridge(b, cfg)
	defer stop()
	for {
		if acked(b, reg) >= benchEnvelopes {
			break
		}
		if time.Since(start) > 5*time.Minute {
			b.Fatalf("bridge acknowledged %v of %d envelopes in 5 minutes", acked(b, reg), benchEnvelopes)
		}
		time.Sleep(10 * time.Millisecond)
	}
	return benchEnvelopes * benchPer / time.Since(start).Seconds()
}

func acked(b *testing.B, reg *prometheus.Registry) float64 {
	mfs, err := reg.Gather()
	if err != nil {
		b.Fatal(err)
	}
	for _, mf := range mfs {
		if mf.GetName() == "takt_bridge_messages_total" {
			return mf.GetMetric()[0].GetCounter().GetValue()
		}
	}
	return 0
}
