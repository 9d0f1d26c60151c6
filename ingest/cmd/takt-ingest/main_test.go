package main

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	mqtt "github.com/eclipse/paho.mqtt.golang"

	"takt.dev/schemas"
	"takt.dev/testkit"
)

// TestMain doubles as takt-ingest itself: fault tests run the test binary as a child
// process with TAKT_INGEST_CHILD set, so that they can SIGKILL a real process.
func TestMain(m *testing.M) {
	if args := os.Getenv("TAKT_INGEST_CHILD"); args != "" {
		main0(strings.Fields(args))
		return
	}
	testkit.Main(m)
}

func TestConfigErrorsNameTheField(t *testing.T) {
	cases := []struct{ yaml, want string }{
		{"kafka:\n  brokerz: [x]\n", "line 2: kafka.brokerz: unknown key (did you mean \"brokers\"?)"},
		{"kafka:\n  brokers: [x]\n  compression: brotli\nbridge:\n  mqtt_url: tcp://x:1\n  client_id: b\n", `kafka.compression = "brotli"`},
		{"sink:\n  linger: soon\n", "soon"},
		{"max_message_bytes: -5\n", "max_message_bytes = -5"},
		{"kafka:\n  brokers: [x]\nbridge:\n  mqtt_url: tcp://x:1\n", "bridge.client_id: missing"},
		{"kafka:\n  brokers: [x]\ndatabase_url: postgres://x@y/z\nmax_message_bytes: 4194304\nsink:\n  fetch_max_bytes: 2097152\n",
			"sink.fetch_max_bytes = 2097152: smaller than the largest record (4259840"},
		{"kafka:\n  brokers: [x]\ndatabase_url: postgres://x@y/z\nsink:\n  prefetch_records: 20000\n", "sink.prefetch_records = 20000: at most 10000"},
		{"kafka:\n  brokers: [x]\ndatabase_url: postgres://x@y/z\nsink:\n  max_concurrent_copies: 65\n", "sink.max_concurrent_copies = 65: at most 64"},
		{"kafka:\n  brokers: [x]\ndatabase_url: postgres://x@y/z\nmemory_limit: 50000000\n", "memory_limit = 50000000: below bridge.queue_bytes (16777216) + 64 MiB"},
		{"kafka:\n  brokers: [x]\ndatabase_url: postgres://x@y/z\nmemory_limit: -5\n", "memory_limit = -5: want bytes, 0 for the default or -1 for no limit"},
	}
	for _, c := range cases {
		file := filepath.Join(t.TempDir(), "ingest.yaml")
		if err := os.WriteFile(file, []byte(c.yaml), 0o644); err != nil {
			t.Fatal(err)
		}
		err := run(context.Background(), []string{"-c", file, "validate"}, func(string) string { return "" }, io.Discard, io.Discard)
		if err == nil || !strings.Contains(err.Error(), c.want) {
			t.Errorf("config %q: err = %v, want it to contain %q", c.yaml, err, c.want)
		}
	}
	var out bytes.Buffer
	if err := run(context.Background(), []string{"-c", "example.yaml", "validate"}, func(string) string { return "" }, &out, io.Discard); err != nil {
		t.Fatalf("example.yaml: %v", err)
	}
	// The configurations of the Kubernetes manifests, with the environment their pods give.
	// (References in the file, ${POD_NAME}, read the process's environment.)
	t.Setenv("POD_NAME", "takt-ingest-0")
	pod := map[string]string{"DATABASE_URL": "postgres://takt_ingest_login@db/takt", "TAKT_MQTT_PASSWORD": "x"}
	// The secret takt-tls is mounted at /etc/takt/tls: a test authority stands in.
	pki, err := testkit.NewPKI(t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	for _, f := range []string{"../../../deploy/kubernetes/base/config/ingest.yaml", "../../../deploy/kubernetes/overlays/staging/config/ingest.yaml"} {
		b, err := os.ReadFile(f)
		if err != nil {
			t.Fatal(err)
		}
		file := filepath.Join(t.TempDir(), "ingest.yaml")
		os.WriteFile(file, bytes.ReplaceAll(b, []byte("/etc/takt/tls/ca.crt"), []byte(pki.CA)), 0o644)
		if err := run(context.Background(), []string{"-c", file, "validate"}, func(k string) string { return pod[k] }, io.Discard, io.Discard); err != nil {
			t.Errorf("%s (as deployed on Kubernetes): %v", f, err)
		}
	}
}

// TestAllInOneProcess runs the bridge and the sink together: envelopes published on
// MQTT (each twice) end up in PostgreSQL once each, and the HTTP endpoints answer.
func TestAllInOneProcess(t *testing.T) {
	mq := testkit.Mosquitto(t)
	k := testkit.Kafka(t)
	db := testkit.NewDatabase(t)
	pool := db.Pool(t)
	port, err := testkit.FreePort()
	if err != nil {
		t.Fatal(err)
	}
	addr := fmt.Sprintf("127.0.0.1:%d", port)
	cfgFile := filepath.Join(t.TempDir(), "ingest.yaml")
	os.WriteFile(cfgFile, []byte("bridge:\n  client_id: e2e-bridge\nsink:\n  linger: 20ms\n"), 0o644)
	env := map[string]string{"DATABASE_URL": db.URL, "TAKT_MQTT_URL": mq.URL(),
		"TAKT_KAFKA_BROKERS": strings.Join(k.Brokers(), ","), "TAKT_HTTP_ADDR": addr}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() {
		done <- run(ctx, []string{"-c", cfgFile, "all"}, func(k string) string { return env[k] }, io.Discard, io.Discard)
	}()
	defer func() {
		cancel()
		if err := <-done; err != nil {
			t.Errorf("run: %v", err)
		}
	}()
	waitHTTP(t, "http://"+addr+"/readyz", 200)

	pub := mqtt.NewClient(mqtt.NewClientOptions().AddBroker(mq.URL()).SetClientID("e2e-pub"))
	if tok := pub.Connect(); !tok.WaitTimeout(10*time.Second) || tok.Error() != nil {
		t.Fatal(tok.Error())
	}
	defer pub.Disconnect(100)
	p := schemas.Path{Tenant: "acme", Site: "s", Area: "a", Line: "l", Equipment: "press-1"}
	const envelopes, per = 50, 20
	for i := range envelopes {
		e := schemas.Envelope{Version: 1, Tenant: p.Tenant, Site: p.Site, Area: p.Area, Line: p.Line, Equipment: p.Equipment, Agent: "gw"}
		for j := range per {
			seq := uint64(i*per + j + 1)
			e.Samples = append(e.Samples, schemas.Sample{Seq: seq, Tag: "p", Role: schemas.RoleMeasurement,
				TS: time.Now().UTC(), Kind: schemas.NumberValue, Value: float64(seq), Quality: schemas.QualityGood})
		}
		b, _ := schemas.Encode(&e)
		for range 2 {
			if tok := pub.Publish(p.Topic(), 1, false, b); !tok.WaitTimeout(10*time.Second) || tok.Error() != nil {
				t.Fatal(tok.Error())
			}
		}
	}
	deadline := time.Now().Add(60 * time.Second)
	var n int
	for {
		pool.QueryRow(context.Background(), `SELECT count(*) FROM samples`).Scan(&n)
		if n >= envelopes*per || time.Now().After(deadline) {
			break
		}
		time.Sleep(50 * time.Millisecond)
	}
	time.Sleep(300 * time.Millisecond)
	var total, distinct int
	pool.QueryRow(context.Background(), `SELECT count(*), count(DISTINCT seq) FROM samples`).Scan(&total, &distinct)
	if total != envelopes*per || distinct != total {
		t.Fatalf("samples: %d rows, %d distinct seq; want %d once each", total, distinct, envelopes*per)
	}
	body := waitHTTP(t, "http://"+addr+"/metrics", 200)
	for _, want := range []string{"takt_bridge_messages_total 100", "takt_sink_rows_total 1000", "takt_sink_duplicate_envelopes_total 50"} {
		if !strings.Contains(body, want) {
			t.Errorf("/metrics lacks %q", want)
		}
	}
}

func waitHTTP(t *testing.T, url string, status int) string {
	t.Helper()
	deadline := time.Now().Add(30 * time.Second)
	for {
		resp, err := http.Get(url)
		if err == nil {
			b, _ := io.ReadAll(resp.Body)
			resp.Body.Close()
			if resp.StatusCode == status {
				return string(b)
			}
			err = fmt.Errorf("status %d: %s", resp.StatusCode, b)
		}
		if time.Now().After(deadline) {
			t.Fatalf("GET %s: %v", url, err)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// Secrets reach takt-ingest from the environment or files, never only the YAML.
func TestSecretsFromTheEnvironmentAndFiles(t *testing.T) {
	dir := t.TempDir()
	os.WriteFile(filepath.Join(dir, "db"), []byte("postgres://sink:s3cr3t@db/takt\n"), 0o600)
	os.WriteFile(filepath.Join(dir, "mqtt"), []byte("bridge-secret\n"), 0o600)
	cfgFile := filepath.Join(dir, "ingest.yaml")
	t.Setenv("TAKT_TEST_BRIDGE_USER", "bridge-1")
	os.WriteFile(cfgFile, []byte("bridge:\n  username: ${TAKT_TEST_BRIDGE_USER}\n"), 0o600)
	env := map[string]string{"DATABASE_URL_FILE": filepath.Join(dir, "db"), "TAKT_MQTT_PASSWORD_FILE": filepath.Join(dir, "mqtt")}
	cfg, err := loadConfig(cfgFile, func(k string) string { return env[k] })
	if err != nil {
		t.Fatal(err)
	}
	if cfg.DatabaseURL != "postgres://sink:s3cr3t@db/takt" || cfg.Bridge.Password != "bridge-secret" || cfg.Bridge.Username != "bridge-1" {
		t.Fatalf("database_url %q, bridge %q/%q", cfg.DatabaseURL, cfg.Bridge.Username, cfg.Bridge.Password)
	}
}
