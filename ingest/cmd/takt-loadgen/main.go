// Command takt-loadgen offers load to a Takt pipeline, for capacity planning (as
// Kafka's perf-test tools do for Kafka): it publishes envelopes over MQTT, QoS 1, at a
// target rate or as fast as the broker acknowledges them, and reports what it offered,
// what the broker acknowledged, and (given the database) what the sink stored and how
// long each envelope took from its publish to the sink's transaction.
//
//	takt-loadgen -mqtt tcp://127.0.0.1:1883 [-tenants 1] [-equipment 10] [-samples 100]
//	             [-rate 0] [-duration 60s] [-inflight 1000] [-database URL] [-drain 60s] [-json]
//
// Every sample is a measurement stamped with its envelope's publish time; the agent is
// named loadgen-<random> (-agent to choose), so a run's rows are told apart. The
// broker's user and TLS: -username, TAKT_MQTT_PASSWORD (or _FILE), -ca-file,
// -cert-file, -key-file. The delays compare the database's clock with this machine's:
// run it on the database's host, or with synchronised clocks.
package main

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"os/signal"
	"slices"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	mqtt "github.com/eclipse/paho.mqtt.golang"
	"github.com/jackc/pgx/v5"

	"takt.dev/schemas"
	"takt.dev/servicekit"
)

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	if err := run(ctx, os.Args[1:], os.Getenv, os.Stdout, os.Stderr); err != nil {
		fmt.Fprintln(os.Stderr, "takt-loadgen:", err)
		os.Exit(1)
	}
}

// Report is what a run measured; -json prints it as is.
type Report struct {
	Agent           string  `json:"agent"`
	Seconds         float64 `json:"seconds"`          // publishing
	OfferedSamples  int64   `json:"offered_samples"`  // published
	OfferedPerS     float64 `json:"offered_per_s"`    // ... per second of publishing
	AckedSamples    int64   `json:"acked_samples"`    // PUBACKed by the broker
	FailedEnvelopes int64   `json:"failed_envelopes"` // publishes the broker did not acknowledge
	StoredInWindow  int64   `json:"stored_in_window"` // stored by the sink while publishing
	StoredPerS      float64 `json:"stored_per_s"`     // ... per second: what the pipeline carried
	StoredSamples   int64   `json:"stored_samples"`   // stored by the end of the drain
	DelayEnvelopes  int     `json:"delay_envelopes"`  // envelopes the delays are of
	DelayP50Millis  float64 `json:"delay_p50_ms"`     // publish → the sink's transaction
	DelayP90Millis  float64 `json:"delay_p90_ms"`
	DelayP99Millis  float64 `json:"delay_p99_ms"`
	DelayMaxMillis  float64 `json:"delay_max_ms"`
	Drained         bool    `json:"drained"` // everything acknowledged was stored by the end of the drain
}

type options struct {
	mqttURL, user, pass, ca, cert, key string
	tenants, equipment, samples        int
	rate                               float64
	duration, drain                    time.Duration
	inflight                           int
	database, agent                    string
	json                               bool
}

func run(ctx context.Context, args []string, getenv func(string) string, stdout, stderr io.Writer) error {
	if len(args) > 0 && (args[0] == "--version" || args[0] == "-version" || args[0] == "version") {
		if len(args) > 1 {
			return fmt.Errorf("%s: unexpected arguments %q", args[0], args[1:])
		}
		fmt.Fprintln(stdout, servicekit.VersionLine("takt-loadgen"))
		return nil
	}
	fs := flag.NewFlagSet("takt-loadgen", flag.ContinueOnError)
	fs.SetOutput(stderr)
	var o options
	fs.StringVar(&o.mqttURL, "mqtt", "tcp://127.0.0.1:1883", "the broker: tcp://host:1883 or ssl://host:8883")
	fs.StringVar(&o.user, "username", "", "the broker user (a gateway's: TENANT/AGENT with takt-mqtt-user)")
	fs.StringVar(&o.ca, "ca-file", "", "TLS: the broker certificate's authority (PEM)")
	fs.StringVar(&o.cert, "cert-file", "", "mutual TLS: the client certificate (PEM)")
	fs.StringVar(&o.key, "key-file", "", "mutual TLS: the client key (PEM)")
	fs.IntVar(&o.tenants, "tenants", 1, "tenants (load-1, load-2, ...), 1..1000")
	fs.IntVar(&o.equipment, "equipment", 10, "equipment per tenant (eq-1, ...), 1..100000")
	fs.IntVar(&o.samples, "samples", 100, "samples per envelope, 1..10000")
	fs.Float64Var(&o.rate, "rate", 0, "samples per second to offer; 0: as fast as the broker acknowledges")
	fs.DurationVar(&o.duration, "duration", time.Minute, "how long to publish")
	fs.IntVar(&o.inflight, "inflight", 1000, "publishes awaiting their PUBACK, at most (1..65535)")
	fs.StringVar(&o.database, "database", "", "PostgreSQL URL (a member of takt_reader or the owner): report what was stored, and the delays")
	fs.DurationVar(&o.drain, "drain", time.Minute, "after publishing, how long to wait for the sink to store what the broker acknowledged")
	fs.StringVar(&o.agent, "agent", "", "the agent name in the envelopes (default loadgen-<random>)")
	fs.BoolVar(&o.json, "json", false, "print the report as JSON")
	if err := fs.Parse(args); err != nil {
		return err
	}
	if fs.NArg() > 0 {
		return fmt.Errorf("unexpected arguments %q", fs.Args())
	}
	switch {
	case o.tenants < 1 || o.tenants > 1000:
		return fmt.Errorf("-tenants %d: want 1 to 1000", o.tenants)
	case o.equipment < 1 || o.equipment > 100000:
		return fmt.Errorf("-equipment %d: want 1 to 100000", o.equipment)
	case o.samples < 1 || o.samples > schemas.DefaultLimits.MaxSamples:
		return fmt.Errorf("-samples %d: want 1 to %d (an envelope's limit)", o.samples, schemas.DefaultLimits.MaxSamples)
	case o.rate < 0:
		return fmt.Errorf("-rate %v: want samples per second, or 0 for as fast as the broker takes them", o.rate)
	case o.duration <= 0:
		return fmt.Errorf("-duration %v: want a positive duration", o.duration)
	case o.inflight < 1 || o.inflight > 65535:
		return fmt.Errorf("-inflight %d: want 1 to 65535", o.inflight)
	case o.drain < 0:
		return fmt.Errorf("-drain %v: want 0 or more", o.drain)
	}
	pass, err := servicekit.Env(getenv, "TAKT_MQTT_PASSWORD")
	if err != nil {
		return err
	}
	o.pass = pass
	if o.agent == "" {
		var b [4]byte
		rand.Read(b[:])
		o.agent = "loadgen-" + hex.EncodeToString(b[:])
	}
	if err := schemas.CheckName(o.agent); err != nil {
		return fmt.Errorf("-agent %q: %v", o.agent, err)
	}
	var db *pgx.Conn
	if o.database != "" {
		if db, err = pgx.Connect(ctx, o.database); err != nil {
			return fmt.Errorf("-database: %w", err)
		}
		defer db.Close(context.Background())
	}

	rep, published, err := publish(ctx, o, stderr)
	if err != nil {
		return err
	}
	if db != nil {
		if err := measure(ctx, db, o, rep, published, stderr); err != nil {
			return err
		}
	}
	if o.json {
		return json.NewEncoder(stdout).Encode(rep)
	}
	fmt.Fprintf(stdout, "agent      %s\n", rep.Agent)
	fmt.Fprintf(stdout, "offered    %d samples in %.1f s: %.0f samples/s\n", rep.OfferedSamples, rep.Seconds, rep.OfferedPerS)
	fmt.Fprintf(stdout, "acked      %d samples (%d envelopes not acknowledged)\n", rep.AckedSamples, rep.FailedEnvelopes)
	if db != nil {
		fmt.Fprintf(stdout, "stored     %d samples while publishing: %.0f samples/s; %d by the end of the drain (drained: %v)\n",
			rep.StoredInWindow, rep.StoredPerS, rep.StoredSamples, rep.Drained)
		fmt.Fprintf(stdout, "delay      p50 %.0f ms, p90 %.0f ms, p99 %.0f ms, max %.0f ms (publish to the sink's transaction, %d envelopes)\n",
			rep.DelayP50Millis, rep.DelayP90Millis, rep.DelayP99Millis, rep.DelayMaxMillis, rep.DelayEnvelopes)
	}
	return nil
}

// publish offers the load and returns the report so far and each envelope's publish
// time (Unix ns) in publishing order: envelope i's first seq is 1 + i × o.samples.
func publish(ctx context.Context, o options, stderr io.Writer) (*Report, []int64, error) {
	tc, err := servicekit.TLSConfig("-", o.ca, o.cert, o.key)
	if err != nil {
		return nil, nil, err
	}
	opts := mqtt.NewClientOptions().AddBroker(o.mqttURL).SetClientID(o.agent).SetUsername(o.user).SetPassword(o.pass).
		SetTLSConfig(tc).SetCleanSession(true).SetAutoReconnect(false).SetConnectTimeout(10 * time.Second).
		SetMaxResumePubInFlight(o.inflight).SetOrderMatters(false).SetWriteTimeout(10 * time.Second)
	client := mqtt.NewClient(opts)
	if tok := client.Connect(); !tok.WaitTimeout(15*time.Second) || tok.Error() != nil {
		return nil, nil, fmt.Errorf("connect to %s: %v", o.mqttURL, tok.Error())
	}
	defer client.Disconnect(250)

	type target struct {
		topic string
		env   schemas.Envelope
	}
	var targets []target
	for t := 1; t <= o.tenants; t++ {
		for e := 1; e <= o.equipment; e++ {
			env := schemas.Envelope{Version: schemas.Version, Tenant: fmt.Sprint("load-", t), Site: "s", Area: "a", Line: "l",
				Equipment: fmt.Sprint("eq-", e), Agent: o.agent}
			targets = append(targets, target{topic: env.Path().Topic(), env: env})
		}
	}
	samples := make([]schemas.Sample, o.samples)
	for i := range samples {
		samples[i] = schemas.Sample{Tag: fmt.Sprint("t", i), Role: schemas.RoleMeasurement, Kind: schemas.NumberValue, Quality: schemas.QualityGood}
	}

	rep := &Report{Agent: o.agent}
	var published []int64
	sem := make(chan struct{}, o.inflight)
	var wg sync.WaitGroup
	var acked, failed atomic.Int64
	seq := uint64(1)
	start := time.Now()
	end := start.Add(o.duration)
	var payload []byte
	for i := 0; time.Now().Before(end) && ctx.Err() == nil; i++ {
		if o.rate > 0 {
			// Paced: the i-th envelope leaves no earlier than its share of the time.
			due := start.Add(time.Duration(float64(i*o.samples) / o.rate * float64(time.Second)))
			if wait := time.Until(due); wait > 0 {
				select {
				case <-time.After(wait):
				case <-ctx.Done():
				}
				if time.Now().After(end) || ctx.Err() != nil {
					break
				}
			}
		}
		select {
		case sem <- struct{}{}:
		case <-ctx.Done():
			continue
		}
		t := &targets[i%len(targets)]
		now := time.Now().UTC().Truncate(time.Millisecond)
		for k := range samples {
			samples[k].Seq, samples[k].TS, samples[k].Value = seq+uint64(k), now, float64(i+k)
		}
		t.env.Samples = samples
		payload, err = schemas.AppendEncode(payload[:0], &t.env)
		if err != nil {
			return nil, nil, err // cannot happen: the envelope is built valid
		}
		published = append(published, now.UnixNano())
		seq += uint64(o.samples)
		tok := client.Publish(t.topic, 1, false, slices.Clone(payload))
		rep.OfferedSamples += int64(o.samples)
		wg.Add(1)
		go func() {
			defer wg.Done()
			defer func() { <-sem }()
			if !tok.WaitTimeout(30*time.Second) || tok.Error() != nil {
				failed.Add(1)
				return
			}
			acked.Add(int64(o.samples))
		}()
	}
	rep.Seconds = time.Since(start).Seconds()
	wg.Wait()
	rep.OfferedPerS = float64(rep.OfferedSamples) / rep.Seconds
	rep.AckedSamples, rep.FailedEnvelopes = acked.Load(), failed.Load()
	if !client.IsConnected() {
		fmt.Fprintln(stderr, "takt-loadgen: the broker closed the connection (its ACL, or a message over its limits?)")
	}
	if rep.AckedSamples == 0 {
		return nil, nil, errors.New("the broker acknowledged nothing: check the user, its ACL and the broker's log")
	}
	return rep, published, nil
}

// measure waits (up to the drain) for the sink to store what the broker acknowledged,
// then reads what was stored and when, from the sink's record of each envelope.
func measure(ctx context.Context, db *pgx.Conn, o options, rep *Report, published []int64, stderr io.Writer) error {
	firstPub := time.Unix(0, published[0])
	windowEnd := firstPub.Add(time.Duration(rep.Seconds * float64(time.Second)))
	deadline := time.Now().Add(o.drain)
	for {
		var stored int64
		if err := db.QueryRow(ctx, `SELECT coalesce(sum(samples), 0) FROM sink_envelope WHERE agent = $1 AND ingested_at >= $2`,
			o.agent, firstPub.Add(-time.Minute)).Scan(&stored); err != nil {
			return fmt.Errorf("reading what was stored (sink_envelope; -database needs a role that reads it): %w", err)
		}
		rep.StoredSamples = stored
		if stored >= rep.AckedSamples || time.Now().After(deadline) || ctx.Err() != nil {
			rep.Drained = stored >= rep.AckedSamples
			break
		}
		time.Sleep(250 * time.Millisecond)
	}
	rows, err := db.Query(ctx, `SELECT first_seq, samples, ingested_at FROM sink_envelope WHERE agent = $1 AND ingested_at >= $2`,
		o.agent, firstPub.Add(-time.Minute))
	if err != nil {
		return err
	}
	var delays []float64
	for rows.Next() {
		var first int64
		var n int
		var at time.Time
		if err := rows.Scan(&first, &n, &at); err != nil {
			return err
		}
		i := (first - 1) / int64(o.samples)
		if first < 1 || (first-1)%int64(o.samples) != 0 || i >= int64(len(published)) {
			continue // not an envelope of this run
		}
		pub := time.Unix(0, published[i])
		if !at.After(windowEnd) {
			rep.StoredInWindow += int64(n)
		}
		delays = append(delays, float64(at.Sub(pub))/float64(time.Millisecond))
	}
	if err := rows.Err(); err != nil {
		return err
	}
	rep.StoredPerS = float64(rep.StoredInWindow) / rep.Seconds
	slices.Sort(delays)
	rep.DelayEnvelopes = len(delays)
	if len(delays) > 0 {
		q := func(p float64) float64 { return delays[int(p*float64(len(delays)-1))] }
		rep.DelayP50Millis, rep.DelayP90Millis, rep.DelayP99Millis, rep.DelayMaxMillis = q(0.5), q(0.9), q(0.99), delays[len(delays)-1]
	}
	if !rep.Drained {
		fmt.Fprintf(stderr, "takt-loadgen: %d of %d acknowledged samples stored after the %v drain\n", rep.StoredSamples, rep.AckedSamples, o.drain)
	}
	return nil
}
