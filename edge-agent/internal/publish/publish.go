// Package publish sends the disk buffer's envelopes to the MQTT broker at QoS 1 with
// eclipse/paho.mqtt.golang.
//
// Contract: a record is acknowledged in the buffer (and so deleted from disk) only
// when the broker's PUBACK for it arrived. Records go out in buffer order, at most
// MaxInflight unacknowledged at a time; when the connection drops or a PUBACK does
// not come, the publisher waits for the outstanding ones, rewinds the buffer to its
// oldest unacknowledged record and sends again from there once reconnected. So the
// broker sees every envelope at least once, in order; an envelope whose PUBACK was
// lost is sent twice. A retained birth message on the agent's status topic says
// "online"; the last will, and a clean shutdown, say "offline".
package publish

import (
	"context"
	"crypto/tls"
	"encoding/json"
	"errors"
	"log/slog"
	"sync"
	"time"

	mqtt "github.com/eclipse/paho.mqtt.golang"
	"github.com/eclipse/paho.mqtt.golang/packets"
	"github.com/prometheus/client_golang/prometheus"
	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/codes"
	"go.opentelemetry.io/otel/trace"

	"takt.dev/edge-agent/internal/buffer"
	"takt.dev/edge-agent/internal/config"
	"takt.dev/schemas"
	"takt.dev/servicekit"
	"takt.dev/servicekit/tracing"
)

// AckTimeout is how long a PUBACK may take before the publisher gives up on the
// connection's outstanding messages and sends them again.
const AckTimeout = 30 * time.Second

// Publisher moves records from the buffer to the broker.
type Publisher struct {
	cfg       config.MQTT
	agent     config.Agent
	max       int
	buf       *buffer.Buffer
	log       *slog.Logger
	m         *metrics
	status    string
	id        Identity
	equipment []string // the equipment codes the agent serves

	mu        sync.Mutex
	connected bool
	connCh    chan struct{} // closed and replaced on every connect or loss
	endSess   context.CancelFunc
	client    mqtt.Client
}

// noStore keeps nothing. paho would otherwise keep in-flight publishes and resend
// them itself after a reconnect, on top of the resend from the buffer (duplicates),
// and in v1.5.1 races with its own writer while doing so.
type noStore struct{}

func (noStore) Open()                             {}
func (noStore) Put(string, packets.ControlPacket) {}
func (noStore) Get(string) packets.ControlPacket  { return nil }
func (noStore) All() []string                     { return nil }
func (noStore) Del(string)                        {}
func (noStore) Close()                            {}
func (noStore) Reset()                            {}

// Identity is what the agent's status messages say about this run of it.
type Identity struct {
	Incarnation string               // this run of the agent process
	Previous    *schemas.PreviousRun // the run before, as far as it got; nil if none is known
	Until       func() time.Time     // how far this run got, by the sources' clock (the time of a clean "offline")
}

// New builds a publisher; Run connects.
func New(cfg *config.Config, buf *buffer.Buffer, id Identity, log *slog.Logger, reg prometheus.Registerer) *Publisher {
	eqs := make([]string, len(cfg.Equipment))
	for i, e := range cfg.Equipment {
		eqs[i] = e.Code
	}
	return &Publisher{cfg: cfg.MQTT, agent: cfg.Agent, max: cfg.Publish.MaxInflight, buf: buf, log: log,
		m: newMetrics(reg), status: schemas.StatusTopic(cfg.Agent.Tenant, cfg.Agent.ID), connCh: make(chan struct{}),
		id: id, equipment: eqs}
}

// statusPayload is the agent's status message (schemas.AgentStatus): "online" as its
// birth, "offline" as its last will (will true) or when it stops.
func (p *Publisher) statusPayload(state string, will bool) []byte {
	st := schemas.AgentStatus{Version: schemas.Version, Tenant: p.agent.Tenant, Agent: p.agent.ID,
		State: state, Will: will, Incarnation: p.id.Incarnation, TS: time.Now().UTC(), Equipment: p.equipment}
	if state == schemas.AgentOnline {
		st.Previous = p.id.Previous
	} else if !will && p.id.Until != nil {
		st.TS = p.id.Until()
	}
	b, _ := json.Marshal(st)
	return b
}

// TLSConfig builds the broker TLS configuration from the files named in cfg, or nil
// when none are named.
func TLSConfig(cfg config.MQTT) (*tls.Config, error) {
	return servicekit.TLSConfig("mqtt.", cfg.CAFile, cfg.CertFile, cfg.KeyFile)
}

func (p *Publisher) setConnected(c bool) {
	p.mu.Lock()
	p.connected = c
	close(p.connCh)
	p.connCh = make(chan struct{})
	p.mu.Unlock()
	if c {
		p.m.connected.Set(1)
	} else {
		p.m.connected.Set(0)
	}
}

// Connected reports whether the broker connection is up.
func (p *Publisher) Connected() bool {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.connected
}

// waitConnected blocks until connected or ctx ends.
func (p *Publisher) waitConnected(ctx context.Context) bool {
	for {
		p.mu.Lock()
		ok, ch := p.connected, p.connCh
		p.mu.Unlock()
		if ok {
			return true
		}
		select {
		case <-ch:
		case <-ctx.Done():
			return false
		}
	}
}

// Run publishes until ctx ends, then sends the offline status and disconnects.
func (p *Publisher) Run(ctx context.Context) error {
	tc, err := TLSConfig(p.cfg)
	if err != nil {
		return err
	}
	opts := mqtt.NewClientOptions().AddBroker(p.cfg.URL).SetClientID(p.cfg.ClientID).
		SetUsername(p.cfg.Username).SetPassword(p.cfg.Password).SetTLSConfig(tc).
		SetCleanSession(true). // resending is ours: from the buffer, in order
		SetAutoReconnect(true).SetConnectRetry(true).
		SetConnectRetryInterval(time.Second).SetMaxReconnectInterval(30*time.Second).
		SetKeepAlive(p.cfg.KeepAlive).SetWriteTimeout(10*time.Second).
		SetBinaryWill(p.status, p.statusPayload(schemas.AgentOffline, true), 1, true).
		SetStore(noStore{})
	opts.SetOnConnectHandler(func(c mqtt.Client) {
		c.Publish(p.status, 1, true, p.statusPayload(schemas.AgentOnline, false))
		p.log.Info("connected to the broker", "broker", p.cfg.URL)
		p.setConnected(true)
	})
	opts.SetConnectionLostHandler(func(_ mqtt.Client, err error) {
		p.log.Warn("broker connection lost; reconnecting", "err", err)
		p.m.disconnects.Inc()
		p.setConnected(false)
		p.mu.Lock()
		if p.endSess != nil {
			p.endSess() // what is in flight will not be acknowledged on this connection
		}
		p.mu.Unlock()
	})
	p.client = mqtt.NewClient(opts)
	p.client.Connect() // retried in the background

	err = p.loop(ctx)

	if p.Connected() {
		tok := p.client.Publish(p.status, 1, true, p.statusPayload(schemas.AgentOffline, false))
		tok.WaitTimeout(2 * time.Second)
	}
	p.client.Disconnect(500)
	if errors.Is(err, context.Canceled) || errors.Is(err, buffer.ErrClosed) {
		return nil
	}
	return err
}

func (p *Publisher) loop(ctx context.Context) error {
	for {
		if !p.waitConnected(ctx) {
			return ctx.Err()
		}
		if err := p.session(ctx); err != nil {
			return err
		}
		// The connection failed us: resend everything not acknowledged, and what was
		// acknowledged within the replay window, in case the broker crashed and lost
		// it (the session is clean, so a new connection never tells; downstream
		// drops what it already has).
		p.buf.Rewind(true)
	}
}

// session publishes while the connection holds; it returns nil when a publish
// failed (after the outstanding ones finished), or an error when ctx ended.
func (p *Publisher) session(ctx context.Context) error {
	sctx, cancel := context.WithCancel(ctx)
	defer cancel()
	p.mu.Lock()
	p.endSess = cancel
	p.mu.Unlock()
	if !p.Connected() { // lost between waitConnected and here
		return nil
	}
	sem := make(chan struct{}, p.max)
	var wg sync.WaitGroup
	defer wg.Wait()
	for {
		rec, pos, err := p.buf.Next(sctx)
		if err != nil {
			if ctx.Err() != nil {
				return ctx.Err()
			}
			if errors.Is(err, buffer.ErrClosed) {
				return err
			}
			if sctx.Err() != nil {
				return nil // a publish failed
			}
			return err
		}
		select {
		case sem <- struct{}{}:
		case <-sctx.Done():
			if ctx.Err() != nil {
				return ctx.Err()
			}
			return nil
		}
		if !p.Connected() {
			<-sem
			return nil
		}
		start := time.Now()
		span := noSpan
		if tracing.Enabled() {
			// From the publish to its PUBACK, a child of the envelope's span.
			_, span = tracer.Start(tracing.FromTraceParent(sctx, schemas.PeekTraceParent(rec.Payload)), "publish "+rec.Topic,
				trace.WithSpanKind(trace.SpanKindProducer), trace.WithAttributes(attribute.Int("takt.samples", rec.Samples),
					attribute.Int("messaging.message.body.size", len(rec.Payload)), attribute.String("messaging.system", "mqtt")))
		}
		tok := p.client.Publish(rec.Topic, 1, false, rec.Payload)
		wg.Add(1)
		go func() {
			defer wg.Done()
			defer func() { <-sem }()
			defer span.End()
			select {
			case <-tok.Done():
			case <-sctx.Done(): // connection lost: resent after the rewind
				return
			case <-time.After(AckTimeout):
			}
			if !tokDone(tok) || tok.Error() != nil {
				span.SetStatus(codes.Error, "no PUBACK: sent again")
				p.m.failures.Inc()
				cancel()
				return
			}
			if !p.buf.Ack(pos) {
				p.m.replayed.Inc() // sent again from the replay window
				return
			}
			p.m.latency.Observe(time.Since(start).Seconds())
			p.m.envelopes.Inc()
			p.m.samples.Add(float64(rec.Samples))
		}()
	}
}

var (
	tracer = tracing.Tracer("agent")
	noSpan = trace.SpanFromContext(context.Background()) // a span that records nothing
)

func tokDone(t mqtt.Token) bool {
	select {
	case <-t.Done():
		return true
	default:
		return false
	}
}

type metrics struct {
	envelopes   prometheus.Counter
	samples     prometheus.Counter
	failures    prometheus.Counter
	disconnects prometheus.Counter
	replayed    prometheus.Counter
	connected   prometheus.Gauge
	latency     prometheus.Histogram
}

func newMetrics(reg prometheus.Registerer) *metrics {
	m := &metrics{
		envelopes: prometheus.NewCounter(prometheus.CounterOpts{Name: "takt_agent_published_envelopes_total",
			Help: "Envelopes the broker acknowledged (PUBACK)."}),
		samples: prometheus.NewCounter(prometheus.CounterOpts{Name: "takt_agent_published_samples_total",
			Help: "Samples in the envelopes the broker acknowledged."}),
		failures: prometheus.NewCounter(prometheus.CounterOpts{Name: "takt_agent_publish_failures_total",
			Help: "Publishes that got no PUBACK (the envelope is sent again)."}),
		disconnects: prometheus.NewCounter(prometheus.CounterOpts{Name: "takt_agent_mqtt_disconnects_total",
			Help: "Broker connections lost."}),
		replayed: prometheus.NewCounter(prometheus.CounterOpts{Name: "takt_agent_replayed_envelopes_total",
			Help: "Envelopes acknowledged before and sent again after a reconnect, from the replay window (buffer.replay_window)."}),
		connected: prometheus.NewGauge(prometheus.GaugeOpts{Name: "takt_agent_mqtt_connected",
			Help: "1 while connected to the broker."}),
		latency: prometheus.NewHistogram(prometheus.HistogramOpts{Name: "takt_agent_publish_seconds",
			Help: "Time from publish to PUBACK.", Buckets: prometheus.ExponentialBuckets(0.0005, 2, 16)}),
	}
	if reg != nil {
		reg.MustRegister(m.envelopes, m.samples, m.failures, m.disconnects, m.replayed, m.connected, m.latency)
	}
	return m
}
