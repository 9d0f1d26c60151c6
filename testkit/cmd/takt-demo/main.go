// Command takt-demo runs the whole Takt pipeline with embedded defaults and
// throwaway servers: a private PostgreSQL with the schema applied and a demo plant
// registered, an in-process MQTT broker (mochi-mqtt) unless -mqtt-url is given, an
// in-process Kafka-protocol broker (kfake) with Takt's topics unless -kafka-brokers
// is given, and, as child processes built from this repository, the simulated PLCs
// (plcsim), the edge agent, ingest, the aggregator and the API with its dashboard.
// It prints where everything is, the dashboard URL and a token, and stops it all on
// Ctrl-C.
//
// Secure by default where it costs nothing: one throwaway certificate authority for
// every link; PostgreSQL over TLS (verify-full) with each service as its own
// least-privilege role; the MQTT broker over TLS only, with a password and an ACL per
// client (the gateway publishes under its tenant only); Kafka over mutual TLS (a
// client certificate required: Debian's kcat, librdkafka 2.0, cannot do SASL with a
// broker that dropped SaslHandshake v0, as Kafka 4 and kfake have; SASL is tested
// with Takt's own clients); throwaway keys for personal data. The passwords are generated
// and printed, like the token, with the commands that use them.
//
//	takt-demo -bin ./bin [-api 127.0.0.1:8080] [-mqtt-url tcp://host:1883] [-kafka-brokers host:9092,...]
package main

import (
	"context"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"encoding/base64"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"os"
	"os/exec"
	"os/signal"
	"path/filepath"
	"strings"
	"syscall"
	"time"

	"github.com/jackc/pgx/v5"
	mqttserver "github.com/mochi-mqtt/server/v2"
	"github.com/mochi-mqtt/server/v2/hooks/auth"
	"github.com/mochi-mqtt/server/v2/listeners"

	"takt.dev/migrations"
	"takt.dev/schemas"
	"takt.dev/testkit"
)

func main() {
	if err := run(context.Background(), os.Args[1:], os.Stdout); err != nil {
		fmt.Fprintln(os.Stderr, "takt-demo:", err)
		os.Exit(1)
	}
}

func run(ctx context.Context, args []string, out io.Writer) error {
	ctx, stop := signal.NotifyContext(ctx, os.Interrupt, syscall.SIGTERM)
	defer stop()
	fs := flag.NewFlagSet("takt-demo", flag.ContinueOnError)
	bin := fs.String("bin", "bin", "directory of plcsim, takt-agent, takt-ingest, takt-aggregator and takt-api")
	apiAddr := fs.String("api", "127.0.0.1:8080", "where the API listens")
	mqttFlag := fs.String("mqtt-url", "", "an MQTT broker to use (default: one in process)")
	kafkaFlag := fs.String("kafka-brokers", "", "Kafka brokers to use, comma-separated (default: one in process)")
	if err := fs.Parse(args); err != nil {
		return err
	}
	for _, b := range []string{"plcsim", "takt-agent", "takt-ingest", "takt-aggregator", "takt-api"} {
		if _, err := os.Stat(filepath.Join(*bin, b)); err != nil {
			return fmt.Errorf("%s: %w (make demo builds it)", b, err)
		}
	}

	root, err := os.MkdirTemp("", "takt-demo-")
	if err != nil {
		return err
	}
	defer os.RemoveAll(root)
	if err := os.Chmod(root, 0o755); err != nil {
		return err
	}

	fmt.Fprintln(out, "takt-demo: starting PostgreSQL (TLS)...")
	pg, pki, err := testkit.StartPostgresTLS(filepath.Join(root, "postgres"))
	if err != nil {
		return err
	}
	defer pg.Close()
	serverCert, err := tls.LoadX509KeyPair(pki.ServerCert, pki.ServerKey)
	if err != nil {
		return err
	}
	serverTLS := &tls.Config{Certificates: []tls.Certificate{serverCert}, MinVersion: tls.VersionTLS12}
	// Every link checks the servers' certificates against the demo's authority.
	dbURL := func(role string) string {
		return fmt.Sprintf("postgres://%s@127.0.0.1:%d/takt?sslmode=verify-full&sslrootcert=%s", role, pg.Port, pki.CA)
	}
	if err := setupDatabase(ctx, pg.URL("postgres"), pg.URL("takt")); err != nil {
		return err
	}
	pass := demoPasswords()

	mqttURL, secureMQTT := *mqttFlag, *mqttFlag == ""
	if secureMQTT {
		fmt.Fprintln(out, "takt-demo: starting the in-process MQTT broker (TLS, passwords, ACL)...")
		u, stopBroker, err := startMQTT(serverTLS, pass)
		if err != nil {
			return err
		}
		defer stopBroker()
		mqttURL = u
	}
	brokers, secureKafka := strings.Split(*kafkaFlag, ","), *kafkaFlag == ""
	if secureKafka {
		fmt.Fprintln(out, "takt-demo: starting the in-process Kafka-protocol broker (mutual TLS)...")
		caPEM, err := os.ReadFile(pki.CA)
		if err != nil {
			return err
		}
		clients := x509.NewCertPool()
		clients.AppendCertsFromPEM(caPEM)
		kafkaTLS := serverTLS.Clone()
		kafkaTLS.ClientAuth, kafkaTLS.ClientCAs = tls.RequireAndVerifyClientCert, clients
		kf, err := testkit.StartKafka(filepath.Join(root, "kafka"), testkit.KafkaOptions{Partitions: 4, TLS: kafkaTLS})
		if err != nil {
			return err
		}
		defer kf.Close()
		brokers = kf.Brokers()
	}

	logs := filepath.Join(root, "logs")
	os.MkdirAll(logs, 0o755)
	var children []*child
	defer func() {
		for i := len(children) - 1; i >= 0; i-- { // agent and ingest drain before the servers go
			children[i].stop()
		}
	}()
	start := func(name string, env []string, args ...string) error {
		c, err := startChild(filepath.Join(*bin, name), filepath.Join(logs, name+".log"), env, args...)
		if err != nil {
			return fmt.Errorf("start %s: %w", name, err)
		}
		children = append(children, c)
		return nil
	}

	agentCfg := filepath.Join(root, "agent.yaml")
	if err := start("plcsim", nil, "-port", "0", "-machines", "3", "-speed", "1", "-agent-config-file", agentCfg,
		"-mqtt-url", mqttURL, "-buffer-dir", filepath.Join(root, "agent-buffer"), "-tenant", "acme"); err != nil {
		return err
	}
	if err := waitFile(ctx, agentCfg, 20*time.Second); err != nil {
		return fmt.Errorf("plcsim did not write the agent configuration: %w", err)
	}
	cfg, err := os.ReadFile(agentCfg)
	if err != nil {
		return err
	}
	agentYAML := strings.Replace(string(cfg), "metrics_addr: 127.0.0.1:0", "metrics_addr: 127.0.0.1:9103", 1)
	if secureMQTT { // the gateway's credentials: the password from the environment, never in the file
		agentYAML = strings.Replace(agentYAML, "mqtt:\n  url: "+mqttURL+"\n", fmt.Sprintf(
			"mqtt:\n  url: %s\n  username: gw-acme\n  password: ${DEMO_MQTT_PASSWORD}\n  ca_file: %s\n", mqttURL, pki.CA), 1)
	}
	if err := os.WriteFile(agentCfg, []byte(agentYAML), 0o644); err != nil {
		return err
	}
	kafkaYAML := ""
	if secureKafka {
		kafkaYAML = fmt.Sprintf("kafka:\n  tls: {enabled: true, ca_file: %s, cert_file: %s, key_file: %s}\n", pki.CA, pki.ClientCert, pki.ClientKey)
	}
	ingestYAML := "http_addr: 127.0.0.1:9102\nbridge:\n  client_id: takt-demo-bridge\n  subscription: plain\n"
	if secureMQTT {
		ingestYAML += "  username: takt-ingest\n  ca_file: " + pki.CA + "\n"
	}
	ingestYAML += "sink:\n  linger: 100ms\n"
	if kafkaYAML != "" {
		ingestYAML += kafkaYAML
	}
	ingestCfg := filepath.Join(root, "ingest.yaml")
	if err := os.WriteFile(ingestCfg, []byte(ingestYAML), 0o644); err != nil {
		return err
	}
	aggYAML := "http_addr: 127.0.0.1:9104\n"
	if kafkaYAML != "" {
		aggYAML += kafkaYAML
	}
	aggCfg := filepath.Join(root, "aggregator.yaml")
	if err := os.WriteFile(aggCfg, []byte(aggYAML), 0o644); err != nil {
		return err
	}
	if err := start("takt-ingest", []string{"DATABASE_URL=" + dbURL("takt_ingest_login"), "TAKT_MQTT_URL=" + mqttURL,
		"TAKT_MQTT_PASSWORD=" + pass.mqtt["takt-ingest"],
		"TAKT_KAFKA_BROKERS=" + strings.Join(brokers, ",")}, "-c", ingestCfg, "all"); err != nil {
		return err
	}
	// The bridge subscribes before the agent publishes: until then a message has no subscriber.
	if err := waitForLog(ctx, filepath.Join(logs, "takt-ingest.log"), "connected and subscribed", 30*time.Second); err != nil {
		return fmt.Errorf("takt-ingest did not subscribe: %w; its log ends:\n%s", err, logTail(filepath.Join(logs, "takt-ingest.log")))
	}
	if err := start("takt-agent", []string{"DEMO_MQTT_PASSWORD=" + pass.mqtt["gw-acme"]}, "run", "-c", agentCfg); err != nil {
		return err
	}
	if err := start("takt-aggregator", []string{"DATABASE_URL=" + dbURL("takt_aggregator_login"),
		"TAKT_KAFKA_BROKERS=" + strings.Join(brokers, ",")}, "-c", aggCfg, "run"); err != nil {
		return err
	}
	// Throwaway keys for the personal data the API seals (servicekit/pii).
	piiKeys := filepath.Join(root, "pii-keys")
	if err := os.WriteFile(piiKeys, []byte(strings.ReplaceAll(testkit.PIIKeys(), ",", "\n")+"\n"), 0o600); err != nil {
		return err
	}
	tokenCmd := exec.CommandContext(ctx, filepath.Join(*bin, "takt-api"), "token", "create", "-tenant", "acme", "-name", "demo", "-scope", "manage")
	tokenCmd.Env = append(os.Environ(), "DATABASE_URL="+dbURL("postgres"), "TAKT_PII_KEYS_FILE="+piiKeys) // an admin command: as the owner
	tokenOut, err := tokenCmd.Output()
	if err != nil {
		var ee *exec.ExitError
		if errors.As(err, &ee) {
			err = fmt.Errorf("%w: %s", err, ee.Stderr)
		}
		return fmt.Errorf("takt-api token create: %w", err)
	}
	token := strings.TrimSpace(string(tokenOut))
	if err := start("takt-api", []string{"DATABASE_URL=" + dbURL("takt_api_login"), "TAKT_HTTP_ADDR=" + *apiAddr, "TAKT_PII_KEYS_FILE=" + piiKeys}, "serve"); err != nil {
		return err
	}

	demo := schemas.Path{Tenant: "acme", Site: "lyon", Area: "packaging", Line: "line-1", Equipment: "filler-1"}
	dayStart := time.Now().UTC().Truncate(24 * time.Hour)
	kb := brokers[0]
	fmt.Fprintf(out, "\nTakt demo is running:\n")
	fmt.Fprintf(out, "  plcsim           a packaging line of 3 machines (filler-1, capper-1, labeler-1) in real time, Modbus TCP\n")
	fmt.Fprintf(out, "  takt-agent       polls them every second, publishes to MQTT (metrics http://127.0.0.1:9103/metrics)\n")
	fmt.Fprintf(out, "  MQTT broker      %s (topics like %s)\n", mqttURL, demo.Topic())
	if secureMQTT {
		fmt.Fprintf(out, "                   TLS only; users gw-acme (publishes under takt/v1/acme/ only), takt-ingest and demo-reader (read only)\n")
	}
	fmt.Fprintf(out, "  takt-ingest      bridge MQTT -> Kafka, sink Kafka -> PostgreSQL (metrics http://127.0.0.1:9102/metrics)\n")
	fmt.Fprintf(out, "  Kafka            %s, topics %s, %s, %s, %s\n", kb, schemas.KafkaSamples, schemas.KafkaEvents, schemas.KafkaDeadLetter, schemas.KafkaStatus)
	if secureKafka {
		fmt.Fprintf(out, "                   mutual TLS: a client certificate of the demo's authority, %s\n", pki.ClientCert)
	}
	fmt.Fprintf(out, "  takt-aggregator  states and counts -> OEE windows (metrics http://127.0.0.1:9104/metrics)\n")
	fmt.Fprintf(out, "  PostgreSQL       %s (TLS, verify-full; ingest, aggregator and api each log in as its own role)\n", dbURL("postgres"))
	fmt.Fprintf(out, "  Authority        %s (the demo's throwaway CA: every server's certificate)\n", pki.CA)
	fmt.Fprintf(out, "  takt-api         http://%s/api/v1/ (OpenAPI: /api/v1/openapi.json)\n\n", *apiAddr)
	fmt.Fprintf(out, "Dashboard:  http://%s/#token=%s\n", *apiAddr, token)
	fmt.Fprintf(out, "API token (tenant acme):  %s\n\n", token)
	fmt.Fprintf(out, "Try:  curl -H 'Authorization: Bearer %s' 'http://%s/api/v1/lines/line-1/oee?bucket=hour&from=%s&to=%s'\n",
		token, *apiAddr, dayStart.Format(time.RFC3339), dayStart.Add(24*time.Hour).Format(time.RFC3339))
	fmt.Fprintf(out, "      psql '%s' -c 'SELECT equipment, tag, ts, value, text_value FROM samples ORDER BY ts DESC LIMIT 10'\n", dbURL("postgres"))
	if secureKafka {
		fmt.Fprintf(out, "      kcat -b %s -X security.protocol=SSL -X ssl.ca.location=%s -X ssl.certificate.location=%s -X ssl.key.location=%s -t %s -C -o -3 -e\n",
			kb, pki.CA, pki.ClientCert, pki.ClientKey, schemas.KafkaEvents)
	} else {
		fmt.Fprintf(out, "      kcat -b %s -t %s -C -o -3 -e\n", kb, schemas.KafkaEvents)
	}
	if secureMQTT {
		host, port, _ := strings.Cut(strings.TrimPrefix(mqttURL, "ssl://"), ":")
		fmt.Fprintf(out, "      mosquitto_sub -h %s -p %s --cafile %s -u demo-reader -P %s -t 'takt/#' -C 1\n", host, port, pki.CA, pass.mqtt["demo-reader"])
	} else {
		fmt.Fprintf(out, "      mosquitto_sub -L '%s/takt/#' -C 1\n", strings.Replace(mqttURL, "tcp://", "mqtt://", 1))
	}
	fmt.Fprintf(out, "Logs: %s. Ctrl-C stops everything.\n\n", logs)

	conn, err := pgx.Connect(ctx, dbURL("postgres"))
	if err != nil {
		return err
	}
	defer conn.Close(context.Background())
	tick := time.NewTicker(5 * time.Second)
	defer tick.Stop()
	for {
		select {
		case <-ctx.Done():
			fmt.Fprintln(out, "\ntakt-demo: stopping")
			return nil
		case <-tick.C:
		}
		for _, c := range children {
			if c.exited() {
				return fmt.Errorf("%s exited; its log ends:\n%s", filepath.Base(c.cmd.Path), logTail(c.log))
			}
		}
		var n, windows int64
		var last *time.Time
		var oee *float64
		err := conn.QueryRow(ctx, `SELECT (SELECT count(*) FROM samples), (SELECT max(ts) FROM samples),
			(SELECT count(*) FROM oee_window), (SELECT oee FROM oee_window WHERE granularity = 'day' AND equipment = 'filler-1' ORDER BY starts_at DESC LIMIT 1)`).
			Scan(&n, &last, &windows, &oee)
		if err == nil {
			at, o := "-", "-"
			if last != nil {
				at = last.Local().Format(time.TimeOnly)
			}
			if oee != nil {
				o = fmt.Sprintf("%.1f%%", 100**oee)
			}
			fmt.Fprintf(out, "takt-demo: %d samples in PostgreSQL (newest from %s), %d OEE windows, filler-1 today: OEE %s\n", n, at, windows, o)
		}
	}
}

type child struct {
	cmd  *exec.Cmd
	log  string
	done chan struct{}
}

func startChild(path, logPath string, env []string, args ...string) (*child, error) {
	logf, err := os.Create(logPath)
	if err != nil {
		return nil, err
	}
	defer logf.Close()
	cmd := exec.Command(path, args...)
	cmd.Env = append(os.Environ(), env...)
	cmd.Stdout, cmd.Stderr = logf, logf
	cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL, Setpgid: true} // Ctrl-C goes to us; we stop them in order
	if err := cmd.Start(); err != nil {
		return nil, err
	}
	c := &child{cmd: cmd, log: logPath, done: make(chan struct{})}
	go func() { _ = cmd.Wait(); close(c.done) }()
	return c, nil
}

func (c *child) exited() bool {
	select {
	case <-c.done:
		return true
	default:
		return false
	}
}

// stop sends SIGTERM and waits up to 30 s, then kills.
func (c *child) stop() {
	if c.exited() {
		return
	}
	_ = c.cmd.Process.Signal(syscall.SIGTERM)
	select {
	case <-c.done:
	case <-time.After(30 * time.Second):
		_ = c.cmd.Process.Kill()
		<-c.done
	}
}

// logTail is the end of a log file (the demo removes its directory when it stops).
func logTail(path string) string {
	b, _ := os.ReadFile(path)
	if len(b) > 3000 {
		b = b[len(b)-3000:]
	}
	return string(b)
}

// waitForLog waits until the log file at path contains text.
func waitForLog(ctx context.Context, path, text string, within time.Duration) error {
	deadline := time.Now().Add(within)
	for {
		if b, _ := os.ReadFile(path); strings.Contains(string(b), text) {
			return nil
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("%q not in %s after %s", text, path, within)
		}
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(20 * time.Millisecond):
		}
	}
}

func waitFile(ctx context.Context, path string, within time.Duration) error {
	deadline := time.Now().Add(within)
	for {
		if _, err := os.Stat(path); err == nil {
			return nil
		}
		if time.Now().After(deadline) {
			return errors.New("timed out")
		}
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(50 * time.Millisecond):
		}
	}
}

func setupDatabase(ctx context.Context, adminURL, dbURL string) error {
	c, err := pgx.Connect(ctx, adminURL)
	if err != nil {
		return err
	}
	_, err = c.Exec(ctx, "CREATE DATABASE takt")
	c.Close(ctx)
	if err != nil {
		return err
	}
	db, err := migrations.Open(dbURL)
	if err != nil {
		return err
	}
	defer db.Close()
	if err := migrations.Up(ctx, db); err != nil {
		return err
	}
	if _, err := migrations.EnsureSamplePartitions(ctx, db, time.Now(), 7); err != nil {
		return err
	}
	_, err = db.ExecContext(ctx, `
WITH tn AS (INSERT INTO tenant VALUES ('acme', 'Acme Beverages') RETURNING tenant_id),
s AS (INSERT INTO site (tenant_id, code, name, time_zone) SELECT tenant_id, 'lyon', 'Lyon plant', 'Europe/Paris' FROM tn RETURNING tenant_id, id),
a AS (INSERT INTO area (tenant_id, site_id, code, name) SELECT tenant_id, id, 'packaging', 'Packaging' FROM s RETURNING tenant_id, id),
l AS (INSERT INTO line (tenant_id, area_id, code, name) SELECT tenant_id, id, 'line-1', 'Line 1' FROM a RETURNING tenant_id, id),
w AS (INSERT INTO work_center (tenant_id, line_id, code, name) SELECT tenant_id, id, 'filling', 'Filling' FROM l RETURNING tenant_id, id)
INSERT INTO equipment (tenant_id, work_center_id, code, name, ideal_cycle_time_s)
SELECT tenant_id, id, code, name, ict FROM w,
  (VALUES ('filler-1', 'Filler 1', 0.4), ('capper-1', 'Capper 1', 0.5), ('labeler-1', 'Labeler 1', 0.6)) AS e(code, name, ict)`)
	if err != nil {
		return err
	}
	// Each service logs in as its own role (migrations 00018, 00019); the throwaway
	// cluster trusts loopback, so they have no password.
	_, err = db.ExecContext(ctx, `CREATE ROLE takt_ingest_login LOGIN BYPASSRLS IN ROLE takt_ingest;
		CREATE ROLE takt_aggregator_login LOGIN IN ROLE takt_aggregator;
		CREATE ROLE takt_api_login LOGIN IN ROLE takt_api`)
	return err
}

// passwords are the demo's generated MQTT passwords, by user.
type passwords struct{ mqtt map[string]string }

func demoPasswords() passwords {
	p := passwords{mqtt: map[string]string{}}
	for _, u := range []string{"gw-acme", "takt-ingest", "demo-reader"} {
		p.mqtt[u] = randomSecret()
	}
	return p
}

func randomSecret() string {
	b := make([]byte, 15)
	rand.Read(b)
	return base64.RawURLEncoding.EncodeToString(b)
}

// startMQTT runs an in-process MQTT broker (mochi-mqtt) on a free loopback port,
// TLS only, that lets in only the users of pass with their password, and to their
// topics only: the gateway gw-acme publishes under tenant acme's data and status
// topics, takt-ingest and demo-reader read. The queue limits that would otherwise
// drop QoS 1 messages for a slow subscriber are raised.
func startMQTT(serverTLS *tls.Config, pass passwords) (string, func(), error) {
	port, err := testkit.FreePort()
	if err != nil {
		return "", nil, err
	}
	caps := mqttserver.NewDefaultServerCapabilities()
	caps.MaximumInflight = 65535
	caps.MaximumClientWritesPending = 1 << 20
	srv := mqttserver.New(&mqttserver.Options{Capabilities: caps,
		Logger: slog.New(slog.NewTextHandler(io.Discard, nil))})
	ledger := &auth.Ledger{
		Users: auth.Users{
			"gw-acme": {Password: auth.RString(pass.mqtt["gw-acme"]), ACL: auth.Filters{
				auth.RString(schemas.TopicRoot + "/acme/#"): auth.WriteOnly, auth.RString(schemas.StatusRoot + "/acme/#"): auth.WriteOnly}},
			"takt-ingest": {Password: auth.RString(pass.mqtt["takt-ingest"]), ACL: auth.Filters{
				auth.RString(schemas.TopicRoot + "/#"): auth.ReadOnly, auth.RString(schemas.StatusRoot + "/#"): auth.ReadOnly}},
			"demo-reader": {Password: auth.RString(pass.mqtt["demo-reader"]), ACL: auth.Filters{"takt/#": auth.ReadOnly}},
		},
		// Whatever a user's own filters do not name, nobody may: mochi would allow it.
		ACL: auth.ACLRules{{Filters: auth.Filters{"#": auth.Deny}}},
	}
	if err := srv.AddHook(new(auth.Hook), &auth.Options{Ledger: ledger}); err != nil {
		return "", nil, err
	}
	addr := fmt.Sprintf("127.0.0.1:%d", port)
	if err := srv.AddListener(listeners.NewTCP(listeners.Config{ID: "demo", Address: addr, TLSConfig: serverTLS})); err != nil {
		return "", nil, err
	}
	go srv.Serve()
	return "ssl://" + addr, func() { srv.Close() }, nil
}
