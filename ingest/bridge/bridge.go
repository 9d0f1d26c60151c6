// Package bridge moves envelopes from MQTT to Kafka.
//
// Contract: a Bridge acknowledges an MQTT message (PUBACK) only after Kafka has
// acknowledged, with acks=all, every record made from it: the envelope on the
// samples topic, its state and counter samples on the events topic, or, when it is
// refused, a dead letter. It subscribes with a persistent session (clean session
// off, a fixed client id) through a shared subscription, so several bridges split the
// load and what was queued for a stopped bridge waits for it at the broker. When
// Kafka is slow or away, the bridge stops taking messages (its queue is bounded) and
// the broker holds the backlog. Every link is at-least-once: a message may reach
// Kafka twice (a retried write, a redelivery after a crash); the sink drops the
// duplicates.
package bridge

import (
	"context"
	"crypto/tls"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	mqtt "github.com/eclipse/paho.mqtt.golang"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/segmentio/kafka-go"
	"github.com/segmentio/kafka-go/compress"
	"github.com/segmentio/kafka-go/sasl"
	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/trace"
	"golang.org/x/sync/semaphore"

	"takt.dev/schemas"
	"takt.dev/servicekit"
	"takt.dev/servicekit/tracekafka"
	"takt.dev/servicekit/tracing"
)

// Config is a bridge's configuration. Zero fields take the defaults of Defaults.
type Config struct {
	BrokerURL string // MQTT broker, tcp://host:port or ssl://host:port
	ClientID  string // fixed, so that the broker keeps the session across restarts
	Group     string // shared-subscription group; bridges of one group split the load
	// Subscription is "shared" (default: $share/<Group>/<topic>, bridges of a group
	// split the load) or "plain" (every bridge gets every message of its Topics). A
	// plain subscription of a persistent session survives a Mosquitto 2.0 restart; a
	// shared one does not (see README).
	Subscription string
	Topics       []string // MQTT filters under takt/v1/; default takt/v1/#
	Username     string
	Password     string
	// CAFile, CertFile and KeyFile set up TLS to the broker (ssl:// or tls://
	// URLs): the authority its certificate chains to, and the bridge's own
	// certificate for brokers that require one (mutual TLS).
	CAFile, CertFile, KeyFile string

	KafkaBrokers []string
	// KafkaTLS and KafkaSASL secure the Kafka connections (kafkalink builds them
	// from the kafka: block); nil: plain.
	KafkaTLS  *tls.Config
	KafkaSASL sasl.Mechanism
	// TopicPrefix goes in front of every Kafka topic the bridge writes.
	TopicPrefix string
	Compression string // none, gzip, snappy, lz4, zstd

	QueueSize    int           // MQTT messages received but not yet acknowledged, at most
	QueueBytes   int64         // ... and their payload bytes, at most (default 16 MiB or the decode limit if larger)
	BatchSize    int           // MQTT messages per Kafka write, at most
	Linger       time.Duration // how long a batch waits to fill
	MaxBackoff   time.Duration // longest wait between Kafka write retries
	Limits       schemas.Limits
	DrainTimeout time.Duration // on shutdown, how long to flush what was received
	// DeadLetterPayload is how much of a refused message its dead letter keeps (its
	// size and SHA-256 are always kept); default schemas.DefaultDeadLetterPayload.
	DeadLetterPayload int
}

// writerBytes is the largest record batch the bridge writes: one envelope at the
// decode limit with its key and headers (schemas.Limits.KafkaRecordBytes).
func (c Config) writerBytes() int { return c.Limits.KafkaRecordBytes() }

// Defaults fills the zero fields of c.
func (c Config) Defaults() Config {
	if c.Group == "" {
		c.Group = "takt-ingest"
	}
	if c.Subscription == "" {
		c.Subscription = "shared"
	}
	if len(c.Topics) == 0 {
		c.Topics = []string{schemas.TopicRoot + "/#"}
	}
	if c.Compression == "" {
		c.Compression = "zstd"
	}
	// The queue only bridges the time between MQTT and Kafka's acknowledgement;
	// the broker holds any backlog. 1,000 messages and 16 MiB keep the ceiling
	// (docs/benchmarks.md) and cut the peak RSS under overload by a fifth against
	// 5,000 and 64 MiB.
	if c.QueueSize <= 0 {
		c.QueueSize = 1000
	}
	if c.QueueBytes <= 0 {
		c.QueueBytes = max(16<<20, int64(c.Limits.MaxBytes))
	}
	if c.BatchSize <= 0 {
		c.BatchSize = 500
	}
	if c.Linger <= 0 {
		c.Linger = 5 * time.Millisecond
	}
	if c.MaxBackoff <= 0 {
		c.MaxBackoff = 5 * time.Second
	}
	if c.DrainTimeout <= 0 {
		c.DrainTimeout = 30 * time.Second
	}
	if c.DeadLetterPayload <= 0 {
		c.DeadLetterPayload = schemas.DefaultDeadLetterPayload
	}
	return c
}

// Validate reports the first field that cannot work.
func (c Config) Validate() error {
	switch {
	case c.BrokerURL == "":
		return errors.New("bridge.mqtt_url: missing")
	case c.ClientID == "":
		return errors.New("bridge.client_id: missing (a fixed id keeps the broker session across restarts)")
	case len(c.KafkaBrokers) == 0:
		return errors.New("kafka.brokers: missing")
	case c.BatchSize > c.QueueSize:
		return fmt.Errorf("bridge.batch_size = %d: larger than bridge.queue_size %d", c.BatchSize, c.QueueSize)
	case c.QueueBytes < int64(max(c.Limits.MaxBytes, schemas.DefaultLimits.MaxBytes)):
		return fmt.Errorf("bridge.queue_bytes = %d: smaller than one message at max_message_bytes (%d)", c.QueueBytes, max(c.Limits.MaxBytes, schemas.DefaultLimits.MaxBytes))
	case schemas.DeadLetterBound(c.DeadLetterPayload)+schemas.MaxDeadLetterSource+1024 > c.writerBytes():
		return fmt.Errorf("dead_letter.max_payload_bytes = %d: its dead letters (up to %d bytes) would not fit a Kafka write of %d bytes (max_message_bytes + 64 KiB)",
			c.DeadLetterPayload, schemas.DeadLetterBound(c.DeadLetterPayload), c.writerBytes())
	}
	if _, err := codec(c.Compression); err != nil {
		return err
	}
	if _, err := servicekit.TLSConfig("bridge.", c.CAFile, c.CertFile, c.KeyFile); err != nil {
		return err
	}
	if c.Subscription != "shared" && c.Subscription != "plain" {
		return fmt.Errorf("bridge.subscription = %q: want shared or plain", c.Subscription)
	}
	for i, f := range c.Topics {
		if f != schemas.TopicRoot+"/#" && !strings.HasPrefix(f, schemas.TopicRoot+"/") {
			return fmt.Errorf("bridge.topics[%d] = %q: must be a filter under %s/", i, f, schemas.TopicRoot)
		}
	}
	if err := schemas.CheckName(c.Group); err != nil {
		return fmt.Errorf("bridge.group = %q: %w", c.Group, err)
	}
	return nil
}

// filters returns the MQTT filters the bridge subscribes to: its data topics and
// the agents' status topics.
func (c Config) filters() map[string]byte {
	out := make(map[string]byte, len(c.Topics)+1)
	for _, t := range append([]string{schemas.StatusRoot + "/#"}, c.Topics...) {
		if c.Subscription == "shared" {
			t = schemas.SharedFilter(c.Group, t)
		}
		out[t] = 1
	}
	return out
}

func codec(name string) (kafka.Compression, error) {
	switch name {
	case "none":
		return 0, nil
	case "gzip":
		return kafka.Gzip, nil
	case "snappy":
		return kafka.Snappy, nil
	case "lz4":
		return kafka.Lz4, nil
	case "zstd":
		return kafka.Zstd, nil
	}
	return 0, fmt.Errorf("kafka.compression = %q: want none, gzip, snappy, lz4 or zstd", name)
}

// Bridge is one MQTT → Kafka bridge. Run it once.
type Bridge struct {
	cfg    Config
	log    *slog.Logger
	m      *metrics
	now    func() time.Time
	writer *kafka.Writer
	in     chan mqtt.Message
	qbytes *semaphore.Weighted // payload bytes received and not yet acknowledged
	queued atomic.Int64
	stop   chan struct{}   // closed when intake stops
	halt   context.Context // done when intake stops
	cancel context.CancelFunc
	once   sync.Once
	conn   sync.Mutex
	ready  bool
}

// New checks cfg and builds a bridge; metrics go to reg.
func New(cfg Config, log *slog.Logger, reg prometheus.Registerer) (*Bridge, error) {
	cfg = cfg.Defaults()
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	comp, _ := codec(cfg.Compression)
	b := &Bridge{
		cfg: cfg, log: log, m: newMetrics(reg), now: time.Now,
		in: make(chan mqtt.Message, cfg.QueueSize), stop: make(chan struct{}), qbytes: semaphore.NewWeighted(cfg.QueueBytes),
	}
	b.halt, b.cancel = context.WithCancel(context.Background())
	b.cfg.Limits.Now = func() time.Time { return b.now() } // samples outside the timestamp window are dead letters
	b.writer = &kafka.Writer{
		Addr:         kafka.TCP(cfg.KafkaBrokers...),
		Transport:    &kafka.Transport{TLS: cfg.KafkaTLS, SASL: cfg.KafkaSASL, DialTimeout: 10 * time.Second},
		Balancer:     &kafka.Hash{},
		RequiredAcks: kafka.RequireAll, // the default is none
		Async:        false,            // Async ignores errors
		BatchTimeout: cfg.Linger,       // the default is one second per write
		BatchSize:    cfg.BatchSize * 2,
		// Kafka refuses record batches above message.max.bytes (1 MiB by default);
		// room for one envelope at the decode limit plus key and headers.
		BatchBytes:   int64(cfg.writerBytes()),
		MaxAttempts:  1, // retried here, with backoff and a metric
		Compression:  compress.Compression(comp),
		ReadTimeout:  10 * time.Second,
		WriteTimeout: 10 * time.Second,
	}
	return b, nil
}

// Ready reports whether the bridge is connected to the MQTT broker.
func (b *Bridge) Ready() bool {
	b.conn.Lock()
	defer b.conn.Unlock()
	return b.ready
}

func (b *Bridge) setReady(r bool) {
	b.conn.Lock()
	b.ready = r
	b.conn.Unlock()
	if r {
		b.m.connected.Set(1)
	} else {
		b.m.connected.Set(0)
	}
}

// Run connects, bridges until ctx is done, then drains: it stops taking messages,
// writes and acknowledges those already received (within DrainTimeout), and
// disconnects. Messages it could not finish stay unacknowledged at the broker.
func (b *Bridge) Run(ctx context.Context) error {
	defer b.writer.Close()
	tc, err := servicekit.TLSConfig("bridge.", b.cfg.CAFile, b.cfg.CertFile, b.cfg.KeyFile)
	if err != nil {
		return err
	}
	opts := mqtt.NewClientOptions().
		SetTLSConfig(tc).
		AddBroker(b.cfg.BrokerURL).
		SetClientID(b.cfg.ClientID).
		SetUsername(b.cfg.Username).
		SetPassword(b.cfg.Password).
		SetCleanSession(false).
		SetAutoAckDisabled(true).
		SetOrderMatters(true).
		SetAutoReconnect(true).
		SetConnectRetry(true).
		SetConnectRetryInterval(time.Second).
		SetMaxReconnectInterval(10 * time.Second).
		SetKeepAlive(30 * time.Second)
	// What the broker kept for the session arrives right after the CONNACK, before
	// the subscriptions below are made again (and their handler with them): paho
	// gives a message no handler takes to nobody and leaves it unacknowledged, in
	// flight at the broker until some later reconnect. Every message on this
	// session is the bridge's, so b.receive takes those too.
	opts.SetDefaultPublishHandler(b.receive)
	filters := b.cfg.filters()
	opts.SetOnConnectHandler(func(c mqtt.Client) {
		// Subscriptions are made again on every connect: a broker that lost the
		// session (or a first start) must not leave the bridge deaf.
		tok := c.SubscribeMultiple(filters, b.receive)
		if !tok.WaitTimeout(30*time.Second) || tok.Error() != nil {
			b.log.Error("subscribe failed; reconnecting", "filters", b.cfg.Topics, "err", tok.Error())
			c.Disconnect(0) // auto-reconnect tries again
			return
		}
		for filter, code := range tok.(*mqtt.SubscribeToken).Result() {
			if code == 0x80 { // SUBACK failure: the broker's ACL refused it
				b.log.Error("the broker refused a subscription (its ACL: the bridge's user needs read on takt/v1/# and takt/status/v1/#); retrying", "filter", filter)
				c.Disconnect(0)
				return
			}
		}
		b.setReady(true)
		b.log.Info("connected and subscribed", "broker", b.cfg.BrokerURL, "subscription", b.cfg.Subscription, "filters", b.cfg.Topics)
	})
	opts.SetConnectionLostHandler(func(_ mqtt.Client, err error) {
		b.setReady(false)
		b.m.disconnects.Inc()
		b.log.Warn("MQTT connection lost; reconnecting", "err", err)
	})
	client := mqtt.NewClient(opts)
	client.Connect() // retries in the background until it succeeds (SetConnectRetry)

	err = b.loop(ctx)

	b.once.Do(func() { close(b.stop); b.cancel() })
	drainCtx, cancel := context.WithTimeout(context.Background(), b.cfg.DrainTimeout)
	defer cancel()
	for len(b.in) > 0 && drainCtx.Err() == nil {
		batch := b.collect(drainCtx, nil)
		if b.process(drainCtx, batch) != nil {
			break
		}
	}
	client.Disconnect(250)
	b.setReady(false)
	if errors.Is(err, context.Canceled) {
		return nil
	}
	return err
}

// receive is paho's message handler: it queues the message for the batch loop, or
// blocks while the queue is full, which stops paho reading from the broker.
// The queue is bounded by count (QueueSize) and by payload bytes (QueueBytes).
func (b *Bridge) receive(_ mqtt.Client, msg mqtt.Message) {
	n := b.weight(msg)
	if !b.qbytes.TryAcquire(n) {
		b.m.queueFull.Inc()
		if b.qbytes.Acquire(b.halt, n) != nil {
			return // stopping: left unacknowledged, the broker delivers it again
		}
	}
	b.m.queueBytes.Set(float64(b.queued.Add(n)))
	select {
	case b.in <- msg:
		b.m.queueDepth.Set(float64(len(b.in)))
		return
	default:
	}
	b.m.queueFull.Inc()
	select {
	case b.in <- msg:
	case <-b.stop: // left unacknowledged: the broker delivers it again
	}
}

// weight is what a message counts against QueueBytes.
func (b *Bridge) weight(msg mqtt.Message) int64 {
	return min(int64(len(msg.Payload()))+1, b.cfg.QueueBytes)
}

func (b *Bridge) loop(ctx context.Context) error {
	for {
		batch := b.collect(ctx, ctx.Done())
		if len(batch) == 0 {
			return ctx.Err()
		}
		if err := b.process(ctx, batch); err != nil {
			return err
		}
	}
}

// collect waits for a first message (until done), then takes more for up to Linger
// or BatchSize messages.
func (b *Bridge) collect(ctx context.Context, done <-chan struct{}) []mqtt.Message {
	var batch []mqtt.Message
	select {
	case m := <-b.in:
		batch = append(batch, m)
	case <-done:
		return nil
	case <-ctx.Done():
		return nil
	}
	linger := time.NewTimer(b.cfg.Linger)
	defer linger.Stop()
	for len(batch) < b.cfg.BatchSize {
		select {
		case m := <-b.in:
			batch = append(batch, m)
		case <-linger.C:
			return batch
		}
	}
	b.m.queueDepth.Set(float64(len(b.in)))
	return batch
}

// process writes a batch to Kafka, then acknowledges every message in it. Transient
// failures are retried with backoff until ctx ends. When Kafka refuses a record for
// what it is (too large for the topic, invalid), the batch is written message by
// message and each refused one becomes a dead letter, bounded so that it fits: a
// deterministic refusal is never retried, and never holds up the others.
func (b *Bridge) process(ctx context.Context, batch []mqtt.Message) error {
	per := make([][]kafka.Message, len(batch))
	samples := make([]int, len(batch))
	spans := make([]trace.Span, len(batch))
	defer func() {
		for _, span := range spans {
			span.End()
		}
	}()
	var records []kafka.Message
	for i, msg := range batch {
		per[i], samples[i], spans[i] = b.convert(ctx, msg)
		records = append(records, per[i]...)
	}
	b.m.batchMessages.Observe(float64(len(batch)))
	err := b.write(ctx, records)
	if err != nil && deterministic(err) {
		for i, msg := range batch {
			err = b.write(ctx, per[i])
			if err != nil && deterministic(err) {
				refused := &schemas.DecodeError{Reason: schemas.ReasonTooLarge, Err: fmt.Errorf("Kafka refused the records of this message: %w", err)}
				b.log.Warn("Kafka refused a message's records; dead-lettered", "topic", msg.Topic(), "bytes", len(msg.Payload()), "err", err)
				per[i], samples[i] = []kafka.Message{b.deadLetter(msg, refused, b.cfg.DeadLetterPayload)}, 0
				if err = b.write(ctx, per[i]); err != nil && deterministic(err) {
					// Cannot happen (dead letters are bounded to fit): keep the digest only.
					per[i] = []kafka.Message{b.deadLetter(msg, refused, 1)}
					err = b.write(ctx, per[i])
				}
			}
			if err != nil {
				return err
			}
		}
	} else if err != nil {
		return err
	}
	for i, msg := range batch {
		for _, r := range per[i] {
			if r.Topic == schemas.KafkaDeadLetter {
				b.m.deadLetters.WithLabelValues(string(headerOf(r, "takt-reason"))).Inc() // letters written, not attempts
			}
		}
		b.m.samples.Add(float64(samples[i]))
		msg.Ack()
		n := b.weight(msg)
		b.qbytes.Release(n)
		b.m.queueBytes.Set(float64(b.queued.Add(-n)))
	}
	b.m.messages.Add(float64(len(batch)))
	return nil
}

// write writes records, retrying transient failures with exponential backoff and
// jitter until ctx ends; it returns a deterministic refusal at once.
func (b *Bridge) write(ctx context.Context, records []kafka.Message) error {
	if p := b.cfg.TopicPrefix; p != "" {
		prefixed := make([]kafka.Message, len(records))
		for i, r := range records {
			r.Topic = p + r.Topic
			prefixed[i] = r
		}
		records = prefixed
	}
	backoff := servicekit.Backoff(50*time.Millisecond, b.cfg.MaxBackoff)
	for len(records) > 0 {
		start := time.Now()
		err := b.writer.WriteMessages(ctx, records...)
		if err == nil {
			b.m.writeSeconds.Observe(time.Since(start).Seconds())
			return nil
		}
		if ctx.Err() != nil {
			return ctx.Err()
		}
		if deterministic(err) {
			return err
		}
		b.m.retries.Inc()
		b.log.Warn("Kafka write failed; retrying", "records", len(records), "err", err)
		if !servicekit.Wait(ctx, backoff) {
			return ctx.Err()
		}
	}
	return nil
}

// deterministic reports whether Kafka refused a record for what it is, which no
// retry changes: larger than the writer or the topic allows, or invalid.
func deterministic(err error) bool {
	var tooLarge kafka.MessageTooLargeError
	if errors.As(err, &tooLarge) {
		return true
	}
	var we kafka.WriteErrors
	if errors.As(err, &we) {
		for _, e := range we {
			if e != nil && deterministic(e) {
				return true
			}
		}
		return false
	}
	var ke kafka.Error
	if errors.As(err, &ke) {
		switch ke {
		case kafka.MessageSizeTooLarge, kafka.RecordListTooLarge, kafka.InvalidRecord:
			return true
		}
	}
	return false
}

func headerOf(m kafka.Message, key string) []byte {
	for _, h := range m.Headers {
		if h.Key == key {
			return h.Value
		}
	}
	return nil
}

// convert turns one MQTT message into its Kafka records and counts its samples.
func (b *Bridge) convert(ctx context.Context, msg mqtt.Message) ([]kafka.Message, int, trace.Span) {
	if strings.HasPrefix(msg.Topic(), schemas.StatusRoot+"/") {
		return b.convertStatus(msg), 0, noSpan
	}
	recs, samples, err := Convert(b.cfg.Limits, msg.Topic(), msg.Payload())
	if err != nil {
		return []kafka.Message{b.deadLetter(msg, err, b.cfg.DeadLetterPayload)}, 0, noSpan
	}
	if !tracing.Enabled() || len(recs) == 0 {
		return recs, samples, noSpan
	}
	// The bridge's span, from the envelope's check to its records' write, a child of
	// the agent's span the envelope names; its context replaces the envelope's in the
	// records' traceparent header.
	ctx, span := tracer.Start(tracekafka.FromHeaders(ctx, recs[0].Headers), "bridge "+msg.Topic(),
		trace.WithSpanKind(trace.SpanKindConsumer), trace.WithAttributes(attribute.Int("takt.samples", samples),
			attribute.String("messaging.system", "kafka"), attribute.String("messaging.destination.name", schemas.KafkaSamples)))
	for i := range recs {
		tracekafka.SetHeader(ctx, &recs[i])
	}
	return recs, samples, span
}

var (
	tracer = tracing.Tracer("bridge")
	noSpan = trace.SpanFromContext(context.Background()) // a span that records nothing
)

// Convert checks an envelope published on topic (with the limits' rules) and
// returns its Kafka records (the samples topic, and the events topic for its state
// and counter samples) and its sample count, or the *schemas.DecodeError that
// refuses it. An empty topic means the envelope's own (a letter of the sink, whose
// MQTT topic was checked when it came in).
func Convert(limits schemas.Limits, topic string, payload []byte) ([]kafka.Message, int, error) {
	env, err := limits.Decode(payload)
	if err != nil {
		return nil, 0, err
	}
	if topic != "" {
		path, perr := schemas.ParseTopic(topic)
		switch {
		case perr != nil:
			return nil, 0, &schemas.DecodeError{Reason: schemas.ReasonTopicMismatch, Err: perr}
		case path != env.Path():
			return nil, 0, &schemas.DecodeError{Reason: schemas.ReasonTopicMismatch,
				Err: fmt.Errorf("topic %q names %s, the envelope %s", topic, path.Topic(), env.Path().Topic())}
		}
	}
	key := env.Path().Key()
	var headers []kafka.Header
	if env.TraceParent != "" {
		// The agent's trace context, for any consumer to continue (the bridge's own
		// span replaces it when the bridge traces).
		headers = []kafka.Header{{Key: tracekafka.HeaderTraceParent, Value: []byte(env.TraceParent)}}
	}
	recs := []kafka.Message{{Topic: schemas.KafkaSamples, Key: key, Value: payload, Headers: headers}}
	if events := eventsOf(env); events != nil {
		value, err := schemas.Encode(events)
		if err != nil { // cannot happen: a subset of a valid envelope is valid
			return nil, 0, &schemas.DecodeError{Reason: schemas.ReasonInvalid, Err: err}
		}
		recs = append(recs, kafka.Message{Topic: schemas.KafkaEvents, Key: key, Value: value, Headers: slices.Clone(headers)})
	}
	return recs, len(env.Samples), nil
}

// convertStatus turns an agent's birth or death into a record of the status topic,
// stamped with the time it was received (for a last will, when the broker noticed
// the agent gone). A retained status, sent again because the bridge subscribed, is
// old news and is dropped.
func (b *Bridge) convertStatus(msg mqtt.Message) []kafka.Message {
	if msg.Retained() {
		return nil
	}
	st, err := schemas.DecodeStatus(msg.Payload())
	if err == nil {
		tenant, agent, terr := schemas.ParseStatusTopic(msg.Topic())
		switch {
		case terr != nil:
			err = &schemas.DecodeError{Reason: schemas.ReasonTopicMismatch, Err: terr}
		case agent != st.Agent || (st.Tenant != "" && tenant != st.Tenant):
			err = &schemas.DecodeError{Reason: schemas.ReasonTopicMismatch,
				Err: fmt.Errorf("topic %q names %s/%s, the status %s/%s", msg.Topic(), tenant, agent, st.Tenant, st.Agent)}
		}
		st.Tenant = tenant
	}
	if err != nil {
		return []kafka.Message{b.deadLetter(msg, err, b.cfg.DeadLetterPayload)}
	}
	st.ReceivedAt = b.now().UTC()
	value, _ := json.Marshal(st)
	b.m.statuses.WithLabelValues(st.State).Inc()
	return []kafka.Message{{Topic: schemas.KafkaStatus, Key: []byte(st.Tenant + "/" + st.Agent), Value: value}}
}

// eventsOf returns the envelope's state and counter samples as an envelope, or nil.
func eventsOf(env *schemas.Envelope) *schemas.Envelope {
	n := 0
	for i := range env.Samples {
		if env.Samples[i].Role != schemas.RoleMeasurement {
			n++
		}
	}
	if n == 0 {
		return nil
	}
	ev := *env
	ev.Samples = make([]schemas.Sample, 0, n)
	for _, s := range env.Samples {
		if s.Role != schemas.RoleMeasurement {
			ev.Samples = append(ev.Samples, s)
		}
	}
	return &ev
}

// deadLetter builds the dead letter of msg, keeping at most keep bytes of it. It is
// counted when written.
func (b *Bridge) deadLetter(msg mqtt.Message, err error, keep int) kafka.Message {
	dl := schemas.NewDeadLetter(err, "mqtt:"+msg.Topic(), b.now(), msg.Payload(), keep)
	b.log.Warn("dead letter", "topic", dl.Source, "reason", dl.Reason, "err", dl.Error, "bytes", dl.PayloadBytes)
	value, _ := json.Marshal(dl)
	key := []byte(msg.Topic())
	if len(key) > schemas.MaxDeadLetterSource {
		key = key[:schemas.MaxDeadLetterSource]
	}
	return kafka.Message{Topic: schemas.KafkaDeadLetter, Key: key, Value: value,
		Headers: []kafka.Header{{Key: "takt-reason", Value: []byte(dl.Reason)}, {Key: "takt-mqtt-message-id", Value: []byte(strconv.Itoa(int(msg.MessageID())))}}}
}
