package main

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"takt.dev/testkit"
)

var benchE2E struct {
	done bool
	r    map[string]float64
}

// BenchmarkPipeline measures the pipeline's ceiling: takt-loadgen offers envelopes
// (100 samples each, 100 equipment) over MQTT as fast as Mosquitto acknowledges them
// for 30 s, more than takt-ingest (bridge and sink in one process) → kfake →
// PostgreSQL can carry on this machine; what the sink stored in that window per
// second is the ceiling. Then, for 20 s, it offers 80 % of that and measures each
// envelope's delay from its publish to the sink's transaction. Reported with the
// CPU seconds takt-ingest spent per 100,000 samples stored and the peak RSS of
// takt-ingest, Mosquitto and takt-loadgen.
func BenchmarkPipeline(b *testing.B) {
	if !benchE2E.done {
		benchE2E.r = measurePipeline(b)
		benchE2E.done = true
	}
	for b.Loop() {
	}
	for _, name := range []string{"e2e_offered_samples_per_s=samples/s", "e2e_samples_per_s=samples/s", "e2e_delay_p50_ms=ms", "e2e_delay_p99_ms=ms",
		"ingest_cpu_s_per_100k_samples=s", "ingest_peak_rss_mib=MiB", "mosquitto_peak_rss_mib=MiB", "loadgen_peak_rss_mib=MiB"} {
		b.ReportMetric(benchE2E.r[name[:strings.IndexByte(name, '=')]], name)
	}
}

// loadgenReport is takt-loadgen's -json output (the fields used here).
type loadgenReport struct {
	OfferedPerS  float64 `json:"offered_per_s"`
	StoredPerS   float64 `json:"stored_per_s"`
	StoredInWin  int64   `json:"stored_in_window"`
	DelayP50     float64 `json:"delay_p50_ms"`
	DelayP99     float64 `json:"delay_p99_ms"`
	Drained      bool    `json:"drained"`
	OfferedTotal int64   `json:"offered_samples"`
}

func measurePipeline(b *testing.B) map[string]float64 {
	bin := buildBinaries(b)
	dir := b.TempDir()
	db := testkit.NewDatabase(b)
	mq := testkit.Mosquitto(b)
	k := testkit.Kafka(b, testkit.KafkaOptions{Partitions: 4})
	env := []string{"DATABASE_URL=" + db.URL, "TAKT_KAFKA_BROKERS=" + strings.Join(k.Brokers(), ","), "TAKT_MQTT_URL=" + mq.URL(), "TAKT_PPROF=1"}
	port, err := testkit.FreePort()
	if err != nil {
		b.Fatal(err)
	}
	ingestCfg := filepath.Join(dir, "ingest.yaml")
	os.WriteFile(ingestCfg, []byte(fmt.Sprintf("http_addr: 127.0.0.1:%d\nbridge:\n  client_id: bench-bridge\n  subscription: plain\nsink:\n  linger: 100ms\n", port)), 0o644)
	ingest, err := startChild(filepath.Join(bin, "takt-ingest"), filepath.Join(dir, "takt-ingest.log"), env, "-c", ingestCfg, "all")
	if err != nil {
		b.Fatal(err)
	}
	defer ingest.stop()
	if err := waitForLog(context.Background(), filepath.Join(dir, "takt-ingest.log"), "connected and subscribed", 30*time.Second); err != nil {
		b.Fatal(err)
	}
	loadgen := func(args ...string) (loadgenReport, float64) {
		cmd := exec.Command(filepath.Join(bin, "takt-loadgen"), append([]string{"-mqtt", mq.URL(), "-database", db.URL, "-json",
			"-equipment", "100", "-samples", "100", "-drain", "5m"}, args...)...)
		var out bytes.Buffer
		cmd.Stdout, cmd.Stderr = &out, os.Stderr
		if err := cmd.Run(); err != nil {
			b.Fatalf("takt-loadgen: %v", err)
		}
		var r loadgenReport
		if err := json.Unmarshal(out.Bytes(), &r); err != nil {
			b.Fatalf("takt-loadgen printed %q: %v", out.String(), err)
		}
		return r, float64(cmd.ProcessState.SysUsage().(*syscall.Rusage).Maxrss) / 1024
	}
	cpu0 := procCPUSeconds(b, ingest.cmd.Process.Pid)
	// A CPU profile of takt-ingest over 20 s of the ceiling run, summarised on stderr
	// (docs/benchmarks.md says where the time goes from it).
	profiled := make(chan string, 1)
	go func() {
		time.Sleep(5 * time.Second)
		profiled <- testkit.CPUProfileTop(fmt.Sprintf("http://127.0.0.1:%d/debug/pprof/profile?seconds=20", port), filepath.Join(bin, "takt-ingest"), filepath.Join(dir, "ingest.pprof"))
	}()
	heap := make(chan string, 1)
	go func() {
		time.Sleep(20 * time.Second)
		heap <- testkit.HeapProfileTop(fmt.Sprintf("http://127.0.0.1:%d/debug/pprof/heap", port), filepath.Join(bin, "takt-ingest"), filepath.Join(dir, "ingest.heap"))
	}()
	ceiling, loadgenRSS := loadgen("-duration", "30s")
	fmt.Fprintf(os.Stderr, "takt-ingest CPU profile at the ceiling:\n%s\n", <-profiled)
	fmt.Fprintf(os.Stderr, "takt-ingest heap in use 20 s into the ceiling run:\n%s\n", <-heap)
	cpu := procCPUSeconds(b, ingest.cmd.Process.Pid) - cpu0
	if !ceiling.Drained {
		b.Fatalf("the pipeline did not store everything acknowledged: %+v", ceiling)
	}
	// The CPU figure is of the whole run, the drain included: every acknowledged sample.
	r := map[string]float64{
		"e2e_offered_samples_per_s":     ceiling.OfferedPerS,
		"e2e_samples_per_s":             ceiling.StoredPerS,
		"ingest_cpu_s_per_100k_samples": cpu / float64(ceiling.OfferedTotal) * 1e5,
		"loadgen_peak_rss_mib":          loadgenRSS,
	}
	paced, _ := loadgen("-duration", "20s", "-rate", fmt.Sprint(int(0.8*ceiling.StoredPerS)))
	r["e2e_delay_p50_ms"], r["e2e_delay_p99_ms"] = paced.DelayP50, paced.DelayP99
	r["ingest_peak_rss_mib"] = procPeakRSSMiB(b, ingest.cmd.Process.Pid)
	r["mosquitto_peak_rss_mib"] = procPeakRSSMiB(b, mq.Pid())
	return r
}

// procCPUSeconds is the user and system CPU time process pid has used.
func procCPUSeconds(b *testing.B, pid int) float64 {
	st, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		b.Fatal(err)
	}
	f := strings.Fields(string(st[bytes.LastIndexByte(st, ')')+2:]))
	utime, _ := strconv.ParseFloat(f[11], 64)
	stime, _ := strconv.ParseFloat(f[12], 64)
	return (utime + stime) / 100 // clock ticks (USER_HZ, 100 on Linux)
}

// procPeakRSSMiB is the peak resident set (VmHWM) of process pid.
func procPeakRSSMiB(b *testing.B, pid int) float64 {
	st, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", pid))
	if err != nil {
		b.Fatal(err)
	}
	for _, line := range strings.Split(string(st), "\n") {
		if v, ok := strings.CutPrefix(line, "VmHWM:"); ok {
			kb, _ := strconv.ParseFloat(strings.TrimSuffix(strings.TrimSpace(v), " kB"), 64)
			return kb / 1024
		}
	}
	b.Fatalf("no VmHWM in /proc/%d/status", pid)
	return 0
}
