package main

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"takt.dev/testkit"
)

func TestMain(m *testing.M) { testkit.Main(m) }

// Against a real pipeline (Mosquitto, takt-ingest all, Kafka, PostgreSQL): a paced run
// offers no more than its rate; everything offered is acknowledged and stored once;
// the delays are of every envelope. A run as fast as the broker takes follows.
func TestLoadgenAgainstThePipeline(t *testing.T) {
	mq := testkit.Mosquitto(t)
	k := testkit.Kafka(t)
	db := testkit.NewDatabase(t)
	bin := t.TempDir()
	build := exec.Command("go", "build", "-o", bin+"/", "../takt-ingest")
	if out, err := build.CombinedOutput(); err != nil {
		t.Fatalf("go build: %v\n%s", err, out)
	}
	port, _ := testkit.FreePort()
	cfg := filepath.Join(t.TempDir(), "ingest.yaml")
	os.WriteFile(cfg, []byte(fmt.Sprintf("http_addr: 127.0.0.1:%d\nbridge:\n  client_id: loadgen-test\n  subscription: plain\nsink:\n  linger: 50ms\n", port)), 0o644)
	ingest := exec.Command(filepath.Join(bin, "takt-ingest"), "-c", cfg, "all")
	ingest.Env = append(os.Environ(), "DATABASE_URL="+db.URL, "TAKT_MQTT_URL="+mq.URL(), "TAKT_KAFKA_BROKERS="+strings.Join(k.Brokers(), ","))
	var logs bytes.Buffer
	ingest.Stdout, ingest.Stderr = &logs, &logs
	if err := ingest.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { ingest.Process.Signal(os.Interrupt); ingest.Wait() })
	for deadline := time.Now().Add(30 * time.Second); ; time.Sleep(100 * time.Millisecond) {
		if resp, err := http.Get(fmt.Sprintf("http://127.0.0.1:%d/readyz", port)); err == nil {
			resp.Body.Close()
			if resp.StatusCode == 200 {
				break
			}
		}
		if time.Now().After(deadline) {
			t.Fatalf("takt-ingest not ready:\n%s", logs.String())
		}
	}

	loadgen := func(args ...string) Report {
		t.Helper()
		var out, errOut bytes.Buffer
		if err := run(context.Background(), append([]string{"-mqtt", mq.URL(), "-database", db.URL, "-json", "-drain", "60s"}, args...),
			func(string) string { return "" }, &out, &errOut); err != nil {
			t.Fatalf("takt-loadgen %v: %v\n%s", args, err, errOut.String())
		}
		var r Report
		if err := json.Unmarshal(out.Bytes(), &r); err != nil {
			t.Fatalf("%v: %s", err, out.String())
		}
		return r
	}
	for _, c := range []struct {
		args []string
		max  int64 // the most it may offer
	}{
		{[]string{"-tenants", "2", "-equipment", "3", "-samples", "50", "-rate", "2000", "-duration", "2s"}, 2000*2 + 50},
		{[]string{"-samples", "200", "-duration", "1s", "-inflight", "50"}, 0},
	} {
		r := loadgen(c.args...)
		t.Logf("%v: %+v", c.args, r)
		if r.OfferedSamples == 0 || (c.max > 0 && r.OfferedSamples > c.max) {
			t.Errorf("%v: offered %d samples, want 1 to %d", c.args, r.OfferedSamples, c.max)
		}
		envelopes := int(r.OfferedSamples / int64(map[bool]int{true: 50, false: 200}[c.max > 0]))
		if r.AckedSamples != r.OfferedSamples || r.StoredSamples != r.OfferedSamples || !r.Drained || r.FailedEnvelopes != 0 {
			t.Errorf("%v: offered %d, acked %d, stored %d (drained %v, %d failed): want all of them, once", c.args,
				r.OfferedSamples, r.AckedSamples, r.StoredSamples, r.Drained, r.FailedEnvelopes)
		}
		if r.DelayEnvelopes != envelopes || r.DelayP50Millis <= 0 || r.DelayP99Millis < r.DelayP50Millis || r.DelayMaxMillis < r.DelayP99Millis {
			t.Errorf("%v: delays of %d envelopes of %d: p50 %v p99 %v max %v", c.args, r.DelayEnvelopes, envelopes, r.DelayP50Millis, r.DelayP99Millis, r.DelayMaxMillis)
		}
		if r.StoredInWindow > r.StoredSamples || r.StoredPerS <= 0 {
			t.Errorf("%v: stored %d in the window, %v/s", c.args, r.StoredInWindow, r.StoredPerS)
		}
	}
}

func TestLoadgenFlagErrors(t *testing.T) {
	for args, want := range map[string]string{
		"-samples 0":                           "-samples 0: want 1 to 10000",
		"-rate -5":                             "-rate -5",
		"-tenants 0":                           "-tenants 0: want 1 to 1000",
		"-inflight 70000":                      "-inflight 70000: want 1 to 65535",
		"-agent a/b":                           `-agent "a/b"`,
		"-mqtt tcp://127.0.0.1:1 -duration 1s": "connect to tcp://127.0.0.1:1",
		"extra":                                "unexpected arguments",
		"--version extra":                      "unexpected arguments",
	} {
		err := run(context.Background(), strings.Fields(args), func(string) string { return "" }, io.Discard, io.Discard)
		if err == nil || !strings.Contains(err.Error(), want) {
			t.Errorf("%s: %v, want %q", args, err, want)
		}
	}
}
