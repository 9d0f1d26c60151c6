// Package agent wires the edge agent together: sources produce readings, which are
// mapped to samples by their tag's role (scale and offset, state codes to Takt state
// categories, counters), batched per equipment into envelopes, numbered with the
// agent-wide seq, appended to the disk buffer, and published from there.
//
// Contract: seq is assigned when an envelope is appended to the buffer, under one
// lock, so the buffer holds envelopes in seq order and seq continues after a restart
// from the buffer's last seq. Under the buffer's pause policy a full buffer blocks
// the append, which blocks the source that produced the readings: polling pauses
// instead of losing data.
package agent

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"log/slog"
	"math"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/cenkalti/backoff/v5"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	"github.com/prometheus/client_golang/prometheus/promhttp"
	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/trace"
	"golang.org/x/sync/errgroup"

	"takt.dev/edge-agent/internal/buffer"
	"takt.dev/edge-agent/internal/config"
	"takt.dev/edge-agent/internal/publish"
	"takt.dev/edge-agent/internal/source"
	"takt.dev/schemas"
	"takt.dev/servicekit"
	"takt.dev/servicekit/buildinfo"
	"takt.dev/servicekit/tracing"
)

// Options are what Run needs besides the configuration.
type Options struct {
	Log      *slog.Logger
	Registry *prometheus.Registry // metrics; a new one when nil
	Now      func() time.Time
	// MetricsListener, when set, is used instead of listening on Agent.MetricsAddr.
	MetricsListener net.Listener
	// Getenv reads the environment (TAKT_PPROF); os.Getenv when nil.
	Getenv func(string) string
}

// Run runs the agent until ctx ends, then stops the sources, writes what they
// produced to the buffer, and closes the buffer.
func Run(ctx context.Context, cfg *config.Config, opt Options) error {
	if opt.Log == nil {
		opt.Log = slog.Default()
	}
	if opt.Registry == nil {
		opt.Registry = prometheus.NewRegistry()
		// The process's own figures (memory, CPU, file descriptors, goroutines) and
		// which build runs, for a fleet of gateways.
		opt.Registry.MustRegister(collectors.NewGoCollector(), collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}),
			buildinfo.Collector("takt-agent"))
	}
	if opt.Now == nil {
		opt.Now = time.Now
	}
	if opt.Getenv == nil {
		opt.Getenv = os.Getenv
	}
	// Refused before anything starts; served on the metrics listener below.
	if _, err := servicekit.Profiling(http.NewServeMux(), opt.Getenv); err != nil {
		return err
	}
	policy, err := buffer.ParsePolicy(cfg.Buffer.WhenFull)
	if err != nil {
		return err
	}
	buf, err := buffer.Open(buffer.Options{Dir: cfg.Buffer.Dir, MaxBytes: cfg.Buffer.MaxBytes, SegmentBytes: cfg.Buffer.SegmentBytes,
		Policy: policy, SyncEvery: cfg.Buffer.SyncEvery, ReplayWindow: cfg.Buffer.ReplayWindow, Log: opt.Log.With("component", "buffer"), Metrics: buffer.NewMetrics(opt.Registry)})
	if err != nil {
		return err
	}
	defer buf.Close()
	var inc [8]byte
	_, _ = rand.Read(inc[:])
	life := &lifeline{path: filepath.Join(cfg.Buffer.Dir, lifelineFile), incarnation: hex.EncodeToString(inc[:]), now: opt.Now}
	prev, err := previousRun(cfg.Buffer.Dir)
	if err != nil {
		return err
	}
	if err := life.write(); err != nil {
		return err
	}
	opt.Log.Info("agent starting", "agent", cfg.Agent.ID, "next_seq", buf.LastSeq()+1, "equipment", len(cfg.Equipment),
		"incarnation", life.incarnation, "previous_run", prev)

	b := newBatcher(cfg, buf, opt.Now, opt.Registry)
	b.life, b.incarnation = life, life.incarnation
	pub := publish.New(cfg, buf, publish.Identity{Incarnation: life.incarnation, Previous: prev, Until: life.until},
		opt.Log.With("component", "mqtt"), opt.Registry)
	// One runner per driver, made once: a driver registers its metrics once.
	runners := map[string]func(context.Context, source.Config, func([]source.Reading)){}
	rt := source.Runtime{AgentID: cfg.Agent.ID, Log: opt.Log, Registry: opt.Registry}

	// Sources stop first (srcCtx), then the batcher flushes, then the publisher gets
	// a moment to send before the buffer closes.
	srcCtx, stopSources := context.WithCancel(ctx)
	defer stopSources()
	var sources sync.WaitGroup
	for ei := range cfg.Equipment {
		for _, src := range cfg.Equipment[ei].Sources {
			run, ok := runners[src.Driver]
			if !ok {
				run = source.Lookup(src.Driver).Runner(rt)
				runners[src.Driver] = run
			}
			maps := mappingsOf(src.SourceTags())
			sources.Add(1)
			go func() {
				defer sources.Done()
				emit := func(rs []source.Reading) { b.addReadings(srcCtx, ei, maps, rs) }
				if tracing.Enabled() {
					// A span for each delivery of readings (a poll's, or a subscription's
					// notification): where the trace of their samples begins.
					emit = func(rs []source.Reading) {
						ctx, span := tracer.Start(srcCtx, "poll "+src.SourceName(), trace.WithAttributes(
							attribute.String("takt.source", src.SourceName()), attribute.String("takt.driver", src.Driver),
							attribute.String("takt.equipment", cfg.Equipment[ei].Code), attribute.Int("takt.readings", len(rs))))
						b.addReadings(ctx, ei, maps, rs)
						span.End()
					}
				}
				run(srcCtx, src.Config, emit)
			}()
		}
	}

	g, gctx := errgroup.WithContext(context.Background())
	pubCtx, stopPub := context.WithCancel(gctx)
	defer stopPub()
	g.Go(func() error { return pub.Run(pubCtx) })
	g.Go(func() error {
		tick := time.NewTicker(cfg.Agent.Heartbeat)
		defer tick.Stop()
		for {
			select {
			case <-srcCtx.Done():
				return nil
			case <-tick.C:
				if err := life.write(); err != nil {
					opt.Log.Warn("recording the agent's progress failed", "err", err)
				}
			}
		}
	})
	g.Go(func() error {
		b.run(srcCtx)
		sources.Wait()
		defer life.write() // a clean stop: this run got this far
		fctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		b.flushAll(fctx) // bounded: a full buffer under the pause policy must not hang the shutdown
		cancel()
		// Give the publisher a bounded moment to send what is left; the rest waits on disk.
		deadline := time.Now().Add(5 * time.Second)
		for time.Now().Before(deadline) && pub.Connected() {
			if recs, _, _ := buf.Pending(); recs == 0 {
				break
			}
			time.Sleep(50 * time.Millisecond)
		}
		stopPub()
		return nil
	})
	if cfg.Agent.MetricsAddr != "" || opt.MetricsListener != nil {
		ln := opt.MetricsListener
		if ln == nil {
			if ln, err = net.Listen("tcp", cfg.Agent.MetricsAddr); err != nil {
				stopSources()
				g.Wait()
				return fmt.Errorf("agent.metrics_addr: %w", err)
			}
		}
		srv := &http.Server{Handler: metricsMux(opt.Registry, pub, opt.Getenv), ReadHeaderTimeout: 5 * time.Second}
		go srv.Serve(ln)
		defer srv.Close()
	}
	err = g.Wait()
	if errors.Is(err, context.Canceled) {
		err = nil
	}
	return err
}

func metricsMux(reg *prometheus.Registry, pub *publish.Publisher, getenv func(string) string) *http.ServeMux {
	mux := http.NewServeMux()
	servicekit.Profiling(mux, getenv) // TAKT_PPROF=1: /debug/pprof/; its value was checked by Run
	mux.Handle("GET /metrics", promhttp.HandlerFor(reg, promhttp.HandlerOpts{Registry: reg}))
	mux.HandleFunc("GET /healthz", func(w http.ResponseWriter, _ *http.Request) { fmt.Fprintln(w, "ok") })
	mux.HandleFunc("GET /readyz", func(w http.ResponseWriter, _ *http.Request) {
		if !pub.Connected() {
			http.Error(w, "not connected to the MQTT broker (data is buffered on disk)", http.StatusServiceUnavailable)
			return
		}
		fmt.Fprintln(w, "ready")
	})
	return mux
}

// batcher collects samples per equipment into envelopes.
type batcher struct {
	cfg *config.Config
	buf *buffer.Buffer
	now func() time.Time

	mu      sync.Mutex // guards pending and seq; held across the buffer append
	pending []pendingBatch
	seq     uint64 // next seq to assign

	samples      prometheus.Counter
	bad          prometheus.Counter
	diskFull     prometheus.Gauge
	appendErrors prometheus.Counter
	degraded     *prometheus.CounterVec
	life         *lifeline // notes how far the run got; nil in tests
	// incarnation is this run's, stamped on every envelope: with the agent and the
	// first seq it is the envelope's identity downstream.
	incarnation string
}

type pendingBatch struct {
	samples []schemas.Sample
	since   time.Time
	// trace is the span (a poll's) that gave the batch its first sample: the
	// envelope's span is its child (traces on only).
	trace trace.SpanContext
}

// tracer makes the agent's spans (no-op ones unless tracing.Setup turned traces on).
var tracer = tracing.Tracer("agent")

func newBatcher(cfg *config.Config, buf *buffer.Buffer, now func() time.Time, reg prometheus.Registerer) *batcher {
	b := &batcher{cfg: cfg, buf: buf, now: now, pending: make([]pendingBatch, len(cfg.Equipment)), seq: buf.LastSeq() + 1,
		samples: prometheus.NewCounter(prometheus.CounterOpts{Name: "takt_agent_samples_total", Help: "Samples produced by the sources."}),
		bad:     prometheus.NewCounter(prometheus.CounterOpts{Name: "takt_agent_bad_samples_total", Help: "Samples of bad quality (failed reads)."}),
		degraded: prometheus.NewCounterVec(prometheus.CounterOpts{Name: "takt_agent_degraded_samples_total",
			Help: "Values the contract cannot carry (NaN, Inf, a text too long or not UTF-8, a time out of range), sent as bad-quality samples, by the field at fault."}, []string{"field"}),
	}
	b.diskFull = prometheus.NewGauge(prometheus.GaugeOpts{Name: "takt_agent_buffer_write_blocked",
		Help: "1 while the buffer cannot be written (disk full or failing): polling is paused."})
	b.appendErrors = prometheus.NewCounter(prometheus.CounterOpts{Name: "takt_agent_buffer_write_errors_total",
		Help: "Failed buffer writes (each retried with backoff while polling is paused)."})
	reg.MustRegister(b.samples, b.bad, b.degraded, b.diskFull, b.appendErrors)
	return b
}

// mapping is a tag's configuration with its names resolved once, at start-up, so
// that mapping a reading parses nothing.
type mapping struct {
	tag     *source.Tag
	role    schemas.Role
	counter schemas.CounterKind
	states  map[int64]stateOf
}

type stateOf struct {
	category schemas.StateCategory
	reason   uint32
}

// mappingsOf resolves a device's tags (validated by config.Load, so the names parse).
func mappingsOf(tags []source.Tag) []mapping {
	out := make([]mapping, len(tags))
	for i := range tags {
		t := &tags[i]
		m := mapping{tag: t}
		m.role, _ = schemas.ParseRole(t.Role)
		m.counter, _ = schemas.ParseCounterKind(t.Counter)
		if len(t.States) > 0 {
			m.states = make(map[int64]stateOf, len(t.States))
			for code, st := range t.States {
				cat, _ := schemas.ParseStateCategory(st.State)
				m.states[code] = stateOf{cat, st.Reason}
			}
		}
		out[i] = m
	}
	return out
}

// addReadings maps readings of a device (with its tags' mappings) of equipment ei to samples.
func (b *batcher) addReadings(ctx context.Context, ei int, maps []mapping, rs []source.Reading) {
	out := make([]schemas.Sample, 0, len(rs))
	states := false
	for _, r := range rs {
		s := toSample(&maps[r.Tag], r)
		if b.life != nil && s.Quality != schemas.QualityBad {
			b.life.observe(s.TS, s.Role == schemas.RoleState)
		}
		states = states || s.Role == schemas.RoleState
		out = append(out, s)
	}
	if states && b.life != nil {
		// Before the states reach the buffer: the run's recorded end is never before
		// a state it reported.
		if err := b.life.write(); err != nil {
			slog.Warn("recording the agent's progress failed", "err", err)
		}
	}
	b.add(ctx, ei, out)
}

// toSample applies a tag's role to a reading.
func toSample(m *mapping, r source.Reading) schemas.Sample {
	t := m.tag
	s := schemas.Sample{Tag: t.Name, TS: r.TS.UTC(), Quality: schemas.QualityGood, Role: m.role}
	if r.Quality == source.Uncertain {
		s.Quality = schemas.QualityUncertain
	}
	if r.Quality == source.Bad {
		s.Quality = schemas.QualityBad
	} else if r.Value.IsText {
		s.Kind, s.Text = schemas.TextValue, r.Value.Text
	} else {
		s.Kind, s.Value = schemas.NumberValue, r.Value.Num
	}
	switch s.Role {
	case schemas.RoleMeasurement:
		if s.Kind == schemas.NumberValue {
			s.Value = s.Value*t.Scale + t.Offset
		}
	case schemas.RoleState:
		s.State = schemas.StateUnknown
		if s.Kind == schemas.NumberValue {
			if st, ok := m.states[int64(s.Value)]; ok {
				s.State, s.Reason = st.category, st.reason
			} else {
				s.Quality = schemas.QualityUncertain // a code the configuration does not know
			}
		}
	case schemas.RoleProduct:
		// The product code: a text, or a recipe number read as its decimal digits.
		if s.Kind == schemas.NumberValue {
			if s.Value < 0 || s.Value != math.Trunc(s.Value) || s.Value > 1<<53 {
				s.Kind, s.Value, s.Quality = schemas.NoValue, 0, schemas.QualityBad
			} else {
				s.Kind, s.Text, s.Value = schemas.TextValue, strconv.FormatInt(int64(s.Value), 10), 0
			}
		}
		if s.Kind == schemas.TextValue {
			s.Text = strings.TrimSpace(s.Text)
		}
	case schemas.RoleCounter:
		s.Counter = m.counter
		s.Wrap = t.Wrap
		if s.Wrap == 0 && r.Quality != source.Bad {
			s.Wrap = r.Value.Wrap // the value's own type, as for Modbus registers
		}
		if s.Kind == schemas.NumberValue && (s.Value < 0 || (s.Wrap != 0 && s.Value >= float64(s.Wrap)) || s.Value > 1<<53 || s.Value != math.Trunc(s.Value)) {
			s.Kind, s.Quality = schemas.NoValue, schemas.QualityBad // a negative or out-of-range count is no count
		}
	}
	return s
}

func (b *batcher) add(ctx context.Context, ei int, samples []schemas.Sample) {
	b.mu.Lock()
	defer b.mu.Unlock()
	for _, s := range samples {
		b.samples.Inc()
		if s.Quality == schemas.QualityBad {
			b.bad.Inc()
		}
		p := &b.pending[ei]
		if len(p.samples) == 0 {
			p.since = b.now()
			p.trace = trace.SpanContextFromContext(ctx)
		}
		p.samples = append(p.samples, s)
		if len(p.samples) >= b.cfg.Publish.BatchSize {
			b.flush(ctx, ei)
		}
	}
}

// run flushes batches older than the linger time until ctx ends.
func (b *batcher) run(ctx context.Context) {
	tick := time.NewTicker(max(b.cfg.Publish.Linger/4, 5*time.Millisecond))
	defer tick.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-tick.C:
		}
		b.mu.Lock()
		for ei := range b.pending {
			if p := b.pending[ei]; len(p.samples) > 0 && b.now().Sub(p.since) >= b.cfg.Publish.Linger {
				b.flush(ctx, ei)
			}
		}
		b.mu.Unlock()
	}
}

func (b *batcher) flushAll(ctx context.Context) {
	b.mu.Lock()
	defer b.mu.Unlock()
	for ei := range b.pending {
		b.flush(ctx, ei)
	}
}

// degrade turns every sample of env the contract refuses into a bad-quality sample
// without a value (a state without one is UNKNOWN), keeping its tag, role, time and
// seq, so that one bad value never costs its neighbours.
func (b *batcher) degrade(env *schemas.Envelope) {
	for i := range env.Samples {
		one := *env
		one.Samples = env.Samples[i : i+1]
		_, err := schemas.Encode(&one)
		if err == nil {
			continue
		}
		s := &env.Samples[i]
		reason := "invalid"
		var fe *schemas.FieldError
		if errors.As(err, &fe) {
			reason = fe.Field[strings.LastIndexByte(fe.Field, '.')+1:]
		}
		b.degraded.WithLabelValues(reason).Inc()
		slog.Warn("a value the contract cannot carry is sent as a bad-quality sample", "equipment", env.Equipment, "tag", s.Tag, "err", err)
		s.Kind, s.Value, s.Text, s.Quality = schemas.NoValue, 0, "", schemas.QualityBad
		if s.Role == schemas.RoleState {
			s.State, s.Reason = schemas.StateUnknown, 0
		}
		if s.TS.Year() < 1970 || s.TS.Year() > 9999 {
			s.TS = b.now().UTC() // a source time out of range: the agent's own
		}
	}
}

// flush numbers equipment ei's pending samples and appends them to the buffer.
// The caller holds b.mu, so while an append waits (a full disk, or a full buffer
// under the pause policy) the sources wait in add: polling pauses, memory stays
// bounded, and it resumes by itself once the append succeeds.
func (b *batcher) flush(ctx context.Context, ei int) {
	p := &b.pending[ei]
	if len(p.samples) == 0 {
		return
	}
	wctx := ctx
	if p.trace.IsValid() {
		wctx = trace.ContextWithSpanContext(ctx, p.trace)
	}
	switch n := b.write(wctx, ei, p.samples); n {
	case len(p.samples):
		p.samples = nil
	case 0:
	default: // split, and only the first part written: keep the rest, unnumbered
		p.samples = append([]schemas.Sample(nil), p.samples[n:]...)
	}
}

// write encodes samples as envelopes of equipment ei, numbers them and appends
// them to the buffer, splitting what would not fit a segment. It returns how many
// samples, from the first, it wrote: fewer than all only when ctx ended first.
func (b *batcher) write(ctx context.Context, ei int, samples []schemas.Sample) int {
	e := b.cfg.Equipment[ei]
	env := schemas.Envelope{Version: schemas.Version, Tenant: b.cfg.Agent.Tenant, Site: e.Site, Area: e.Area, Line: e.Line,
		Equipment: e.Code, Agent: b.cfg.Agent.ID, Incarnation: b.incarnation, Samples: samples}
	first := b.seq
	for i := range env.Samples {
		env.Samples[i].Seq = first + uint64(i)
	}
	if tracing.Enabled() {
		// The envelope's span, a child of the poll that began the batch; its context
		// travels in the envelope (the bridge and the sink continue the trace).
		var span trace.Span
		ctx, span = tracer.Start(ctx, "envelope", trace.WithAttributes(attribute.String("takt.equipment", e.Code),
			attribute.Int("takt.samples", len(samples)), attribute.Int64("takt.first_seq", int64(first))))
		defer span.End()
		env.TraceParent = tracing.TraceParent(ctx)
	}
	payload, err := schemas.Encode(&env)
	if err != nil {
		// A value the contract cannot carry (NaN or Inf from a source, a text too
		// long or not UTF-8, a time out of range): that sample, not the batch, is
		// sent as a bad-quality sample without a value, its reason counted and logged.
		b.degrade(&env)
		if payload, err = schemas.Encode(&env); err != nil { // cannot happen: say so loudly, keep running
			slog.Error("envelope does not encode; samples discarded", "equipment", e.Code, "err", err)
			return len(samples)
		}
	}
	topic := env.Path().Topic()
	if int64(buffer.Overhead+len(topic)+len(payload)) > b.buf.MaxRecord() && len(samples) > 1 {
		// Larger than a segment (many long texts): two envelopes, each of which fits.
		half := len(samples) / 2
		if n := b.write(ctx, ei, samples[:half]); n < half {
			return n
		}
		return half + b.write(ctx, ei, samples[half:])
	}
	rec := buffer.Record{Topic: topic, Payload: payload, FirstSeq: first, Samples: len(env.Samples)}
	var backoff *backoff.ExponentialBackOff
	for {
		err := b.buf.Append(ctx, rec)
		if err == nil {
			break
		}
		if ctx.Err() != nil || errors.Is(err, buffer.ErrClosed) {
			return 0
		}
		if backoff == nil {
			// A disk error (full, read-only, failing): wait for it with polling
			// paused, rather than piling samples up in memory.
			backoff = servicekit.Backoff(100*time.Millisecond, 5*time.Second)
			b.diskFull.Set(1)
			slog.Error("cannot write to the buffer; polling is paused until it can", "equipment", e.Code, "dir", b.cfg.Buffer.Dir, "err", err)
		}
		b.appendErrors.Inc()
		if !servicekit.Wait(ctx, backoff) {
			return 0
		}
	}
	if backoff != nil {
		b.diskFull.Set(0)
		slog.Info("the buffer is writable again; polling resumes", "equipment", e.Code)
	}
	b.seq += uint64(len(env.Samples))
	return len(samples)
}
