package testkit_test

import (
	"context"
	"errors"
	"fmt"
	"net"
	"path/filepath"
	"strings"
	"testing"
	"time"

	mqtt "github.com/eclipse/paho.mqtt.golang"
	"github.com/jackc/pgx/v5"
	"github.com/segmentio/kafka-go"

	"takt.dev/schemas"
	"takt.dev/testkit"
)

func TestMain(m *testing.M) { testkit.Main(m) }

func TestPostgresSurvivesKillAndStop(t *testing.T) {
	ctx := context.Background()
	db := testkit.NewDatabase(t)
	pg := testkit.Postgres(t)
	pool := db.Pool(t)
	if _, err := pool.Exec(ctx, `INSERT INTO tenant (tenant_id, name) VALUES ('acme', 'Acme')`); err != nil {
		t.Fatal(err)
	}
	for _, fault := range []struct {
		name string
		do   func() error
	}{{"kill", pg.Kill}, {"stop", pg.Stop}} {
		if err := fault.do(); err != nil {
			t.Fatalf("%s: %v", fault.name, err)
		}
		// A new connection, not one the pool may hold: nothing may answer now.
		cctx, cancel := context.WithTimeout(ctx, 5*time.Second)
		if c, err := pgx.Connect(cctx, db.URL); err == nil {
			var started time.Time
			var port int
			c.QueryRow(cctx, `SELECT pg_postmaster_start_time(), inet_server_port()`).Scan(&started, &port)
			c.Close(cctx)
			cancel()
			t.Fatalf("after %s a server still answers at %s: started %s, port %d", fault.name, db.URL, started, port)
		}
		cancel()
		if err := pool.Ping(ctx); err == nil { // nor a connection the pool held
			t.Fatalf("after %s the pool's connection still answers", fault.name)
		}
		if err := pg.Start(); err != nil {
			t.Fatalf("start after %s: %v", fault.name, err)
		}
		var n int
		if err := pool.QueryRow(ctx, `SELECT count(*) FROM tenant`).Scan(&n); err != nil || n != 1 {
			t.Fatalf("after %s and start: count = %d, %v; want 1 committed row", fault.name, n, err)
		}
	}
}

func TestDatabasesAreIsolated(t *testing.T) {
	ctx := context.Background()
	a, b := testkit.NewDatabase(t), testkit.NewDatabase(t)
	if a.Name == b.Name {
		t.Fatal("two tests share a database")
	}
	if _, err := a.Pool(t).Exec(ctx, `INSERT INTO tenant VALUES ('a', 'A')`); err != nil {
		t.Fatal(err)
	}
	var n int
	if err := b.Pool(t).QueryRow(ctx, `SELECT count(*) FROM tenant`).Scan(&n); err != nil || n != 0 {
		t.Fatalf("second database sees %d tenants (%v), want 0", n, err)
	}
}

// TestMosquittoKeepsQueuedMessagesAcrossRestart checks the broker configuration the
// delivery promise depends on: a persistent session's QoS 1 messages, more than
// Mosquitto's default queue of 1000, survive a broker restart.
func TestMosquittoKeepsQueuedMessagesAcrossRestart(t *testing.T) {
	mq := testkit.Mosquitto(t)
	const n = 3000
	topic := "takt/v1/testkit/s/a/l/e-" + fmt.Sprint(time.Now().UnixNano())

	got := make(chan string, n)
	subOpts := mqtt.NewClientOptions().AddBroker(mq.URL()).SetClientID("testkit-sub").
		SetCleanSession(false).SetAutoReconnect(false)
	subOpts.SetDefaultPublishHandler(func(_ mqtt.Client, m mqtt.Message) { got <- string(m.Payload()) })
	sub := connect(t, subOpts)
	if tok := sub.Subscribe(topic, 1, nil); !tok.WaitTimeout(10*time.Second) || tok.Error() != nil {
		t.Fatalf("subscribe: %v", tok.Error())
	}
	sub.Disconnect(100)

	pub := connect(t, mqtt.NewClientOptions().AddBroker(mq.URL()).SetClientID("testkit-pub"))
	for i := range n {
		if tok := pub.Publish(topic, 1, false, fmt.Sprint(i)); !tok.WaitTimeout(10*time.Second) || tok.Error() != nil {
			t.Fatalf("publish %d: %v", i, tok.Error())
		}
	}
	pub.Disconnect(100)

	if err := mq.Stop(); err != nil {
		t.Fatal(err)
	}
	if err := mq.Start(); err != nil {
		t.Fatal(err)
	}
	sub = connect(t, subOpts)
	defer sub.Disconnect(100)
	seen := map[string]bool{}
	deadline := time.After(30 * time.Second)
	for len(seen) < n {
		select {
		case m := <-got:
			seen[m] = true
		case <-deadline:
			t.Fatalf("after the restart, %d of %d queued messages arrived", len(seen), n)
		}
	}
}

func connect(t *testing.T, o *mqtt.ClientOptions) mqtt.Client {
	t.Helper()
	c := mqtt.NewClient(o)
	if tok := c.Connect(); !tok.WaitTimeout(10*time.Second) || tok.Error() != nil {
		t.Fatalf("connect: %v", tok.Error())
	}
	return c
}

// TestKafkaWithKafkaGo checks what ingest relies on: acks=all produce, a consumer
// group with commits, records and offsets kept across a broker restart, and a
// network cut through the proxy that heals.
func TestKafkaWithKafkaGo(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	k := testkit.Kafka(t)
	w := &kafka.Writer{
		Addr: kafka.TCP(k.Brokers()...), Topic: schemas.KafkaSamples, Balancer: &kafka.Hash{},
		RequiredAcks: kafka.RequireAll, BatchTimeout: 5 * time.Millisecond, Compression: kafka.Zstd,
		MaxAttempts: 3, WriteBackoffMin: 50 * time.Millisecond, WriteBackoffMax: 200 * time.Millisecond,
	}
	defer w.Close()
	write := func(from, to int) error {
		var msgs []kafka.Message
		for i := from; i < to; i++ {
			msgs = append(msgs, kafka.Message{Key: []byte(fmt.Sprint("eq-", i%7)), Value: []byte(fmt.Sprint(i))})
		}
		return w.WriteMessages(ctx, msgs...)
	}
	if err := write(0, 500); err != nil {
		t.Fatal(err)
	}
	r := kafka.NewReader(kafka.ReaderConfig{
		Brokers: k.Brokers(), GroupID: "testkit", Topic: schemas.KafkaSamples,
		StartOffset: kafka.FirstOffset, MaxWait: 100 * time.Millisecond,
	})
	read := func(n int) map[string]bool {
		seen := map[string]bool{}
		for len(seen) < n {
			m, err := r.FetchMessage(ctx)
			if err != nil {
				t.Fatalf("fetch after %d: %v", len(seen), err)
			}
			seen[string(m.Value)] = true
			if err := r.CommitMessages(ctx, m); err != nil {
				t.Fatal(err)
			}
		}
		return seen
	}
	if got := read(500); len(got) != 500 {
		t.Fatalf("read %d", len(got))
	}
	r.Close()

	k.Stop()
	if err := k.Start(); err != nil {
		t.Fatal(err)
	}
	k.Proxy.Cut()
	cutCtx, cutCancel := context.WithTimeout(ctx, 2*time.Second)
	err := w.WriteMessages(cutCtx, kafka.Message{Key: []byte("x"), Value: []byte("lost?")})
	cutCancel()
	if err == nil {
		t.Fatal("a write through a cut network succeeded")
	}
	k.Proxy.Restore()
	if err := write(500, 600); err != nil {
		t.Fatalf("write after restore: %v", err)
	}
	r = kafka.NewReader(kafka.ReaderConfig{
		Brokers: k.Brokers(), GroupID: "testkit", Topic: schemas.KafkaSamples,
		StartOffset: kafka.FirstOffset, MaxWait: 100 * time.Millisecond,
	})
	defer r.Close()
	got := read(100)
	for i := 500; i < 600; i++ {
		if !got[fmt.Sprint(i)] {
			t.Fatalf("record %d missing after restart; the group's offsets should have skipped 0..499 only", i)
		}
	}
	for i := range 500 {
		if got[fmt.Sprint(i)] {
			t.Fatalf("record %d read again: committed offsets were lost in the restart", i)
		}
	}
}

func TestProxyCut(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			go func() { buf := make([]byte, 64); n, _ := c.Read(buf); c.Write(buf[:n]); c.Close() }()
		}
	}()
	p, err := testkit.NewProxy(ln.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	defer p.Close()
	echo := func() error {
		c, err := net.DialTimeout("tcp", p.Addr(), time.Second)
		if err != nil {
			return err
		}
		defer c.Close()
		c.SetDeadline(time.Now().Add(2 * time.Second))
		if _, err := c.Write([]byte("ping")); err != nil {
			return err
		}
		buf := make([]byte, 4)
		n, err := c.Read(buf)
		if err != nil {
			return err
		}
		if string(buf[:n]) != "ping" {
			return errors.New("wrong echo " + string(buf[:n]))
		}
		return nil
	}
	if err := echo(); err != nil {
		t.Fatalf("through the proxy: %v", err)
	}
	p.Cut()
	if err := echo(); err == nil {
		t.Fatal("echo succeeded through a cut proxy")
	}
	p.Restore()
	if err := echo(); err != nil {
		t.Fatalf("after restore: %v", err)
	}
}

// A cluster with TLS: sslmode=verify-full against its authority connects over TLS;
// against another authority it is refused.
func TestPostgresTLS(t *testing.T) {
	url, pki := testkit.PostgresTLS(t)
	c, err := pgx.Connect(context.Background(), url)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close(context.Background())
	var ssl bool
	if err := c.QueryRow(context.Background(), `SELECT ssl FROM pg_stat_ssl WHERE pid = pg_backend_pid()`).Scan(&ssl); err != nil || !ssl {
		t.Fatalf("connection over TLS: %v %v", ssl, err)
	}
	other, err := testkit.NewPKI(filepath.Join(t.TempDir(), "other"))
	if err != nil {
		t.Fatal(err)
	}
	bad := strings.Replace(url, pki.CA, other.CA, 1)
	if c2, err := pgx.Connect(context.Background(), bad); err == nil {
		c2.Close(context.Background())
		t.Fatal("verify-full accepted a server certificate of another authority")
	}
}
