package main

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"regexp"
	"sort"
	"strings"
	"testing"
	"time"

	"takt.dev/testkit"
)

var benchE2E struct {
	done           bool
	perS, p50, p99 float64
}

// BenchmarkPipeline runs plcsim (6 machines) → takt-agent (6 Modbus devices of 1,000
// registers at 100 ms: 60,000 samples/s offered) → Mosquitto → takt-ingest (bridge
// and sink) → kfake → PostgreSQL on this machine, warms up 10 s, then for 60 s
// measures the samples stored per second and, twice a second, the delay from the
// newest stored sample's time to now (sample time to queryable row).
func BenchmarkPipeline(b *testing.B) {
	if !benchE2E.done {
		measurePipeline(b)
		benchE2E.done = true
	}
	for b.Loop() {
	}
	b.ReportMetric(benchE2E.perS, "e2e_samples_per_s=samples/s")
	b.ReportMetric(benchE2E.p50, "e2e_delay_p50_ms=ms")
	b.ReportMetric(benchE2E.p99, "e2e_delay_p99_ms=ms")
}

func measurePipeline(b *testing.B) {
	ctx := context.Background()
	bin := buildBinaries(b)
	dir := b.TempDir()
	db := testkit.NewDatabase(b)
	pool := db.Pool(b)
	mq := testkit.Mosquitto(b)
	k := testkit.Kafka(b, testkit.KafkaOptions{Partitions: 4})
	env := []string{"DATABASE_URL=" + db.URL, "TAKT_PII_KEYS=" + testkit.PIIKeys(), "TAKT_KAFKA_BROKERS=" + strings.Join(k.Brokers(), ","), "TAKT_MQTT_URL=" + mq.URL()}
	var procs []*child
	defer func() {
		for i := len(procs) - 1; i >= 0; i-- {
			procs[i].stop()
		}
	}()
	start := func(name string, args ...string) *child {
		c, err := startChild(filepath.Join(bin, name), filepath.Join(dir, name+".log"), env, args...)
		if err != nil {
			b.Fatal(err)
		}
		procs = append(procs, c)
		return c
	}
	start("plcsim", "-machines", "6", "-port", "0")
	var addrs []string
	re := regexp.MustCompile(`on modbus tcp://(\S+)`)
	for deadline := time.Now().Add(20 * time.Second); len(addrs) < 6; time.Sleep(50 * time.Millisecond) {
		out, _ := os.ReadFile(filepath.Join(dir, "plcsim.log"))
		addrs = nil
		for _, m := range re.FindAllStringSubmatch(string(out), -1) {
			addrs = append(addrs, m[1])
		}
		if time.Now().After(deadline) {
			b.Fatalf("plcsim did not start: %s", out)
		}
	}
	var cfg strings.Builder
	fmt.Fprintf(&cfg, "agent: {id: gw-bench, tenant: bench, metrics_addr: \"\"}\nmqtt: {url: %q}\nbuffer: {dir: %q, max_bytes: 1073741824}\npublish: {linger: 100ms, batch_size: 1000}\nequipment:\n", mq.URL(), filepath.Join(dir, "buffer"))
	for i, a := range addrs {
		fmt.Fprintf(&cfg, "  - {site: s, area: a, line: l, code: m%d, modbus: [{name: d%d, url: 'tcp://%s', interval: 100ms, gap_fill: 0, tags: [", i, i, a)
		for r := range 1000 {
			if r > 0 {
				cfg.WriteString(", ")
			}
			fmt.Fprintf(&cfg, "{name: r%d, address: %d}", r, 40+r)
		}
		cfg.WriteString("]}]}\n")
	}
	agentCfg := filepath.Join(dir, "agent.yaml")
	os.WriteFile(agentCfg, []byte(cfg.String()), 0o644)
	ingestCfg := filepath.Join(dir, "ingest.yaml")
	os.WriteFile(ingestCfg, []byte("http_addr: 127.0.0.1:0\nbridge:\n  client_id: bench-bridge\n  subscription: plain\nsink:\n  linger: 100ms\n"), 0o644)
	start("takt-ingest", "-c", ingestCfg, "all")
	start("takt-agent", "run", "-c", agentCfg)

	count := func() int64 {
		var n int64
		pool.QueryRow(ctx, `SELECT count(*) FROM samples`).Scan(&n)
		return n
	}
	time.Sleep(10 * time.Second)
	n0, t0 := count(), time.Now()
	var delays []float64
	for time.Since(t0) < 60*time.Second {
		var d *float64
		pool.QueryRow(ctx, `SELECT extract(epoch FROM now() - max(ts)) * 1000 FROM samples WHERE ts > now() - interval '10 minutes'`).Scan(&d)
		if d != nil {
			delays = append(delays, *d)
		}
		time.Sleep(500 * time.Millisecond)
	}
	n1 := count()
	benchE2E.perS = float64(n1-n0) / time.Since(t0).Seconds()
	sort.Float64s(delays)
	if len(delays) == 0 {
		b.Fatal("no delay measured")
	}
	benchE2E.p50 = delays[len(delays)/2]
	benchE2E.p99 = delays[int(0.99*float64(len(delays)-1))]
}
