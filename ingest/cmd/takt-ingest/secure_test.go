package main

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	mqtt "github.com/eclipse/paho.mqtt.golang"

	"takt.dev/schemas"
	"takt.dev/testkit"
)

// TestSecureBroker runs Mosquitto with the shipped production configuration
// (deploy/mosquitto/takt-secure.conf: TLS only, here with client certificates
// required too, users and an ACL made by deploy/mosquitto/takt-mqtt-user) and the
// bridge and sink as a real process over TLS with its credentials. Anonymous and
// wrong-password clients are refused; a gateway of tenant acme publishes into acme
// and nothing it sends into tenant other arrives; it cannot subscribe to the data,
// it receives nothing of the data (Mosquitto grants a subscription but delivers only
// what the ACL lets the user read), nor takes the bridge's client id (and with it
// its session).
func TestSecureBroker(t *testing.T) {
	dir := t.TempDir()
	pki, err := testkit.NewPKI(filepath.Join(dir, "pki"))
	if err != nil {
		t.Fatal(err)
	}
	deploy, _ := filepath.Abs("../../../deploy/mosquitto")
	passwd, acl := filepath.Join(dir, "takt.passwd"), filepath.Join(dir, "takt.acl")
	addUser := func(args ...string) string {
		t.Helper()
		cmd := exec.Command(filepath.Join(deploy, "takt-mqtt-user"), args...)
		cmd.Env = append(os.Environ(), "TAKT_MQTT_PASSWD="+passwd, "TAKT_MQTT_ACL="+acl)
		out, err := cmd.Output()
		if err != nil {
			t.Fatalf("takt-mqtt-user %v: %v", args, err)
		}
		return strings.TrimSpace(string(out))
	}
	bridgePass := addUser("bridge", "takt-bridge-1")
	acmePass := addUser("gateway", "acme", "gw1")
	addUser("gateway", "other", "gw9")
	if out, err := exec.Command(filepath.Join(deploy, "takt-mqtt-user"), "gateway", "acme", "gw/1").CombinedOutput(); err == nil || !strings.Contains(string(out), `agent "gw/1"`) {
		t.Fatalf("a bad agent name: %v %s", err, out)
	}

	conf, err := os.ReadFile(filepath.Join(deploy, "takt-secure.conf"))
	if err != nil {
		t.Fatal(err)
	}
	c := strings.NewReplacer("/etc/mosquitto/takt.passwd", passwd, "/etc/mosquitto/takt.acl", acl,
		"listener 8883", "listener {{port}} 127.0.0.1", "/etc/mosquitto/certs/ca.crt", pki.CA,
		"/etc/mosquitto/certs/server.crt", pki.ServerCert, "/etc/mosquitto/certs/server.key", pki.ServerKey,
		"# require_certificate true", "require_certificate true").Replace(string(conf))
	mq, err := testkit.StartMosquittoConfig(filepath.Join(dir, "mq"), c)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { mq.Close() })
	url := fmt.Sprintf("ssl://127.0.0.1:%d", mq.Port)

	caPEM, _ := os.ReadFile(pki.CA)
	roots := x509.NewCertPool()
	roots.AppendCertsFromPEM(caPEM)
	cert, err := tls.LoadX509KeyPair(pki.ClientCert, pki.ClientKey)
	if err != nil {
		t.Fatal(err)
	}
	connect := func(user, pass, clientID string) (mqtt.Client, error) {
		o := mqtt.NewClientOptions().AddBroker(url).SetClientID(clientID).SetUsername(user).SetPassword(pass).
			SetTLSConfig(&tls.Config{RootCAs: roots, Certificates: []tls.Certificate{cert}, MinVersion: tls.VersionTLS12}).
			SetConnectTimeout(5 * time.Second)
		cl := mqtt.NewClient(o)
		tok := cl.Connect()
		if !tok.WaitTimeout(10*time.Second) || tok.Error() != nil {
			return nil, fmt.Errorf("connect: %v", tok.Error())
		}
		t.Cleanup(func() { cl.Disconnect(100) })
		return cl, nil
	}
	if _, err := connect("", "", "anonymous"); err == nil {
		t.Fatal("an anonymous client was let in")
	}
	if _, err := connect("acme/gw1", "wrong", "gw1"); err == nil {
		t.Fatal("a wrong password was let in")
	}

	db, k := testkit.NewDatabase(t), testkit.Kafka(t)
	pool := db.Pool(t)
	cfgFile := filepath.Join(dir, "ingest.yaml")
	os.WriteFile(cfgFile, []byte(fmt.Sprintf("http_addr: 127.0.0.1:0\nbridge:\n  client_id: takt-bridge-1\n  username: takt-bridge-1\n  ca_file: %s\n  cert_file: %s\n  key_file: %s\nsink:\n  linger: 20ms\n",
		pki.CA, pki.ClientCert, pki.ClientKey)), 0o600)
	logPath := filepath.Join(dir, "ingest.log")
	testkit.StartChild(t, logPath, "TAKT_INGEST_CHILD=-c "+cfgFile+" all", "DATABASE_URL="+db.URL, "TAKT_MQTT_URL="+url,
		"TAKT_MQTT_PASSWORD="+bridgePass, "TAKT_KAFKA_BROKERS="+strings.Join(k.Brokers(), ","))
	for deadline := time.Now().Add(30 * time.Second); ; time.Sleep(20 * time.Millisecond) {
		if b, _ := os.ReadFile(logPath); strings.Contains(string(b), "connected and subscribed") {
			break
		}
		if time.Now().After(deadline) {
			b, _ := os.ReadFile(logPath)
			t.Fatalf("the bridge did not subscribe over TLS:\n%s", b)
		}
	}

	gw, err := connect("acme/gw1", acmePass, "takt-bridge-1") // tries the bridge's id too
	if err != nil {
		t.Fatal(err)
	}
	envelope := func(tenant string, seq uint64) (string, []byte) {
		e := schemas.Envelope{Version: 1, Tenant: tenant, Site: "s", Area: "a", Line: "l", Equipment: "e", Agent: "gw1", Incarnation: "r",
			Samples: []schemas.Sample{{Seq: seq, Tag: "t", Role: schemas.RoleMeasurement, TS: time.Now().UTC(), Kind: schemas.NumberValue, Value: 1, Quality: schemas.QualityGood}}}
		b, _ := schemas.Encode(&e)
		return e.Path().Topic(), b
	}
	publish := func(topic string, payload []byte) {
		if tok := gw.Publish(topic, 1, false, payload); !tok.WaitTimeout(10*time.Second) || tok.Error() != nil {
			t.Fatalf("publish %s: %v", topic, tok.Error())
		}
	}
	publish(envelope("other", 1)) // into another tenant: the ACL drops it
	publish(envelope("acme", 2))
	// Mosquitto grants the subscription but delivers nothing the ACL does not let
	// the user read: the gateway must receive nothing, its own data included.
	var received atomic.Int32
	gw.Subscribe("takt/v1/#", 1, func(mqtt.Client, mqtt.Message) { received.Add(1) }).WaitTimeout(10 * time.Second)
	publish(envelope("acme", 3))
	deadline := time.Now().Add(30 * time.Second)
	for {
		var acme, other int
		pool.QueryRow(context.Background(), `SELECT count(*) FILTER (WHERE tenant_id = 'acme'), count(*) FILTER (WHERE tenant_id = 'other') FROM samples`).Scan(&acme, &other)
		if other != 0 {
			t.Fatalf("a gateway of acme wrote %d samples into tenant other", other)
		}
		if acme == 2 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("%d of acme's 2 samples stored over the secure broker", acme)
		}
		time.Sleep(50 * time.Millisecond)
	}
	time.Sleep(300 * time.Millisecond)
	if n := received.Load(); n != 0 {
		t.Fatalf("a gateway subscribed to takt/v1/# and received %d messages", n)
	}
	b, _ := os.ReadFile(logPath)
	if strings.Contains(string(b), "MQTT connection lost") {
		t.Fatalf("the bridge lost its connection when a gateway used its client id:\n%s", b)
	}
}
