// Package service runs the aggregator: a Kafka consumer group over the events and
// status topics (so equipment are spread over instances by partition) that saves
// observations and agents' births and deaths, and a loop that recomputes the windows
// of dirty equipment-days and keeps open days moving with the clock.
//
// Contract: Kafka offsets are committed after the observations they carry are in
// PostgreSQL (at-least-once; saving is idempotent). Windows are recomputed from what
// is stored, so late and out-of-order events land in their windows, and a replay of
// the topic from the start gives the same table. A record PostgreSQL refuses (a
// deterministic error) is counted, logged and skipped, never retried forever; a day
// whose computation fails is set aside by the store and never blocks the others.
package service

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"log/slog"
	"strconv"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/segmentio/kafka-go"
	"github.com/segmentio/kafka-go/sasl"
	"golang.org/x/sync/errgroup"

	"takt.dev/plant/store"
	"takt.dev/schemas"
	"takt.dev/servicekit"
	"takt.dev/servicekit/tracekafka"
	"takt.dev/servicekit/tracing"
)

// Config shapes the aggregator. Zero fields take defaults.
type Config struct {
	KafkaBrokers   []string
	KafkaTLS       *tls.Config    // nil: plain (kafkalink builds these from the kafka: block)
	KafkaSASL      sasl.Mechanism // nil: none
	Group          string         // default takt-aggregator
	Topics         []string       // default TopicPrefix + schemas.KafkaEvents and schemas.KafkaStatus
	TopicPrefix    string         // in front of every topic name
	BatchRecords   int            // records saved per transaction, at most; default 500
	Linger         time.Duration  // a batch waits at most this long; default 200ms
	RecomputeEvery time.Duration  // how often dirty days are looked for; default 2s
	RefreshEvery   time.Duration  // how often open days (today) are recomputed as time passes; default 1m
}

// Service is one aggregator instance.
type Service struct {
	cfg   Config
	store *store.Store
	log   *slog.Logger
	now   func() time.Time
	m     *metrics
}

// New builds a service.
func New(cfg Config, st *store.Store, log *slog.Logger, reg prometheus.Registerer, now func() time.Time) (*Service, error) {
	if len(cfg.KafkaBrokers) == 0 {
		return nil, errors.New("kafka.brokers: missing")
	}
	if cfg.Group == "" {
		cfg.Group = "takt-aggregator"
	}
	if len(cfg.Topics) == 0 {
		cfg.Topics = []string{cfg.TopicPrefix + schemas.KafkaEvents, cfg.TopicPrefix + schemas.KafkaStatus}
	}
	if cfg.RefreshEvery <= 0 {
		cfg.RefreshEvery = time.Minute
	}
	if cfg.BatchRecords <= 0 {
		cfg.BatchRecords = 500
	}
	if cfg.Linger <= 0 {
		cfg.Linger = 200 * time.Millisecond
	}
	if cfg.RecomputeEvery <= 0 {
		cfg.RecomputeEvery = 2 * time.Second
	}
	if now == nil {
		now = time.Now
	}
	m := newMetrics(reg)
	st.OnUnknownTenant = m.unknownTenant.Inc
	st.OnAnomaly = func(a string) { m.anomalies.WithLabelValues(a).Inc() }
	st.Now = now
	return &Service{cfg: cfg, store: st, log: log, now: now, m: m}, nil
}

// Run consumes and recomputes until ctx ends.
func (s *Service) Run(ctx context.Context) error {
	cctx, cancel := context.WithTimeout(ctx, 10*time.Second)
	if err := s.store.CheckRole(cctx); err != nil {
		cancel()
		return fmt.Errorf("aggregator: %w", err)
	}
	cancel()
	g, gctx := errgroup.WithContext(ctx)
	g.Go(func() error { return s.consume(gctx) })
	g.Go(func() error { return s.recompute(gctx) })
	err := g.Wait()
	if errors.Is(err, context.Canceled) {
		return nil
	}
	return err
}

func (s *Service) consume(ctx context.Context) error {
	r := kafka.NewReader(kafka.ReaderConfig{Brokers: s.cfg.KafkaBrokers, GroupID: s.cfg.Group, GroupTopics: s.cfg.Topics,
		Dialer:      &kafka.Dialer{Timeout: 10 * time.Second, DualStack: true, TLS: s.cfg.KafkaTLS, SASLMechanism: s.cfg.KafkaSASL},
		StartOffset: kafka.FirstOffset, MaxWait: 100 * time.Millisecond, CommitInterval: 0})
	defer r.Close()
	fetchBackoff := servicekit.Backoff(100*time.Millisecond, 10*time.Second)
	for {
		var batch []kafka.Message
		var envs []*schemas.Envelope
		var statuses []*schemas.AgentStatus
		deadline := time.Now().Add(s.cfg.Linger)
		for len(batch) < s.cfg.BatchRecords {
			fctx, cancel := ctx, context.CancelFunc(func() {})
			if len(batch) > 0 {
				fctx, cancel = context.WithDeadline(ctx, deadline)
			}
			m, err := r.FetchMessage(fctx)
			cancel()
			if err != nil {
				if ctx.Err() != nil {
					return ctx.Err()
				}
				if errors.Is(err, context.DeadlineExceeded) {
					break
				}
				s.log.Warn("fetch failed; retrying", "err", err)
				if !servicekit.Wait(ctx, fetchBackoff) {
					return ctx.Err()
				}
				continue
			}
			fetchBackoff.Reset()
			s.m.lag.WithLabelValues(m.Topic, strconv.Itoa(m.Partition)).Set(float64(max(0, m.HighWaterMark-m.Offset-1)))
			batch = append(batch, m)
			if m.Topic == s.cfg.TopicPrefix+schemas.KafkaStatus {
				st, err := schemas.DecodeStatus(m.Value)
				if err != nil {
					s.refuse(m, "status", err)
					continue
				}
				statuses = append(statuses, st)
				continue
			}
			env, err := schemas.Decode(m.Value)
			if err != nil {
				s.refuse(m, string(schemas.ReasonOf(err)), err) // the bridge validated it; someone else wrote this
				continue
			}
			envs = append(envs, env)
		}
		sctx, end := ctx, func() {}
		if tracing.Enabled() && len(envs) > 0 {
			sctx, end = tracekafka.ConsumeBatch(ctx, tracer, "aggregator save", batch)
		}
		err := s.save(sctx, envs)
		end()
		if err != nil {
			return err
		}
		for _, st := range statuses {
			if err := s.status(ctx, st); err != nil {
				return err
			}
		}
		if err := r.CommitMessages(ctx, batch...); err != nil && ctx.Err() == nil {
			s.log.Warn("offset commit failed; the records will be saved again (idempotent)", "err", err)
		}
	}
}

var tracer = tracing.Tracer("aggregator")

func (s *Service) refuse(m kafka.Message, reason string, err error) {
	s.m.refused.WithLabelValues(reason).Inc()
	s.log.Warn("record refused", "topic", m.Topic, "partition", m.Partition, "offset", m.Offset, "key", string(m.Key), "reason", reason, "err", err)
}

// save stores envs, retrying transient failures with backoff until ctx ends. When
// PostgreSQL refuses the data itself, the envelopes are saved one by one and the
// refused ones are counted and skipped.
func (s *Service) save(ctx context.Context, envs []*schemas.Envelope) error {
	one := func(envs []*schemas.Envelope) error {
		return retry(ctx, s, "saving events", func() error {
			st, rd, err := s.store.Save(ctx, envs)
			if err == nil {
				s.m.states.Add(float64(st))
				s.m.readings.Add(float64(rd))
			}
			return err
		})
	}
	err := one(envs)
	if err == nil || !store.IsDataError(err) {
		return err
	}
	for _, env := range envs {
		if err := one([]*schemas.Envelope{env}); err != nil {
			if !store.IsDataError(err) {
				return err
			}
			s.m.refused.WithLabelValues(string(schemas.ReasonRejectedByDatabase)).Inc()
			s.log.Warn("envelope refused by the database; skipped", "tenant", env.Tenant, "equipment", env.Equipment,
				"agent", env.Agent, "first_seq", env.Samples[0].Seq, "err", err)
		}
	}
	return nil
}

func (s *Service) status(ctx context.Context, st *schemas.AgentStatus) error {
	if st.Tenant == "" || len(st.Equipment) == 0 {
		return nil // an agent before version 1 names no equipment
	}
	s.m.agentStatus.WithLabelValues(st.State).Inc()
	err := retry(ctx, s, "saving agent status", func() error {
		return s.store.AgentStatus(ctx, st)
	})
	if err != nil && store.IsDataError(err) {
		s.m.refused.WithLabelValues(string(schemas.ReasonRejectedByDatabase)).Inc()
		s.log.Warn("agent status refused by the database; skipped", "tenant", st.Tenant, "agent", st.Agent, "err", err)
		return nil
	}
	return err
}

// retry runs fn until it succeeds, fails with a data error (returned), or ctx ends,
// with exponential backoff and jitter between attempts.
func retry(ctx context.Context, s *Service, what string, fn func() error) error {
	backoff := servicekit.Backoff(100*time.Millisecond, 10*time.Second)
	for {
		err := fn()
		if err == nil || store.IsDataError(err) {
			return err
		}
		if ctx.Err() != nil {
			return ctx.Err()
		}
		s.m.retries.Inc()
		s.log.Warn(what+" failed; retrying", "err", err)
		if !servicekit.Wait(ctx, backoff) {
			return ctx.Err()
		}
	}
}

func (s *Service) recompute(ctx context.Context) error {
	tick := time.NewTicker(s.cfg.RecomputeEvery)
	defer tick.Stop()
	var lastRefresh time.Time
	for {
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-tick.C:
		}
		if time.Since(lastRefresh) >= s.cfg.RefreshEvery {
			if _, err := s.store.RefreshOpen(ctx); err != nil && ctx.Err() == nil {
				s.log.Warn("marking open days failed; trying again next time", "err", err)
			}
			lastRefresh = time.Now()
			s.updateBacklog(ctx)
		}
		for ctx.Err() == nil {
			start := time.Now()
			d, found, err := s.store.RecomputeNext(ctx, s.now())
			if err != nil {
				if ctx.Err() != nil {
					break
				}
				if found {
					s.m.failures.Inc()
					s.log.Warn("computing an equipment-day failed; set aside and retried later", "day", d.String(), "err", err)
					continue // the others go on
				}
				s.m.retries.Inc()
				s.log.Warn("claiming a dirty day failed; retrying", "err", err)
				break
			}
			if !found {
				break
			}
			s.m.days.Inc()
			s.m.recompute.Observe(time.Since(start).Seconds())
		}
	}
}

// updateBacklog sets the backlog gauges from the dirty table.
func (s *Service) updateBacklog(ctx context.Context) {
	b, err := store.QueueBacklog(ctx, s.store.Pool)
	if err != nil {
		return
	}
	s.m.dirty.Set(float64(b.Dirty))
	s.m.setAside.Set(float64(b.SetAside))
	s.m.oldestDirty.Set(b.Oldest.Seconds())
}

type metrics struct {
	states, readings, retries, days, unknownTenant, failures prometheus.Counter
	refused, agentStatus, anomalies                          *prometheus.CounterVec
	dirty, setAside, oldestDirty                             prometheus.Gauge
	lag                                                      *prometheus.GaugeVec
	recompute                                                prometheus.Histogram
}

func newMetrics(reg prometheus.Registerer) *metrics {
	m := &metrics{
		states:   prometheus.NewCounter(prometheus.CounterOpts{Name: "takt_aggregator_state_observations_total", Help: "State samples saved."}),
		readings: prometheus.NewCounter(prometheus.CounterOpts{Name: "takt_aggregator_counter_readings_total", Help: "Counter samples saved."}),
		refused: prometheus.NewCounterVec(prometheus.CounterOpts{Name: "takt_aggregator_refused_records_total",
			Help: "Records skipped: not valid envelopes or status messages, or refused by the database (label reason)."}, []string{"reason"}),
		agentStatus: prometheus.NewCounterVec(prometheus.CounterOpts{Name: "takt_aggregator_agent_status_total",
			Help: "Agent births (online) and deaths (offline) applied to their equipment."}, []string{"state"}),
		anomalies: prometheus.NewCounterVec(prometheus.CounterOpts{Name: "takt_aggregator_anomalous_days_total",
			Help: "Equipment-day computations whose windows carry an anomaly (good_above_total: the counters disagree; performance_above_100: the ideal cycle time is wrong)."}, []string{"anomaly"}),
		failures: prometheus.NewCounter(prometheus.CounterOpts{Name: "takt_aggregator_recompute_failures_total",
			Help: "Equipment-day computations that failed; the day is set aside and retried with backoff."}),
		dirty:       prometheus.NewGauge(prometheus.GaugeOpts{Name: "takt_aggregator_dirty_days", Help: "Equipment-days waiting to be computed."}),
		setAside:    prometheus.NewGauge(prometheus.GaugeOpts{Name: "takt_aggregator_set_aside_days", Help: "Equipment-days whose computation failed and waits for a retry."}),
		oldestDirty: prometheus.NewGauge(prometheus.GaugeOpts{Name: "takt_aggregator_oldest_dirty_seconds", Help: "Age of the oldest equipment-day waiting to be computed."}),
		retries:     prometheus.NewCounter(prometheus.CounterOpts{Name: "takt_aggregator_retries_total", Help: "Database operations retried."}),
		days:        prometheus.NewCounter(prometheus.CounterOpts{Name: "takt_aggregator_days_computed_total", Help: "Equipment-days whose windows were computed."}),
		unknownTenant: prometheus.NewCounter(prometheus.CounterOpts{Name: "takt_aggregator_unknown_tenant_days_total",
			Help: "Equipment-days not computed because their tenant is not registered (their observations are kept)."}),
		recompute: prometheus.NewHistogram(prometheus.HistogramOpts{Name: "takt_aggregator_recompute_seconds", Help: "Time to compute and write one equipment-day.", Buckets: prometheus.ExponentialBuckets(0.001, 2, 14)}),
		lag: prometheus.NewGaugeVec(prometheus.GaugeOpts{Name: "takt_aggregator_lag_records",
			Help: "Records behind the partition's high-water mark at the last fetch (consumer lag)."}, []string{"topic", "partition"}),
	}
	if reg != nil {
		reg.MustRegister(m.states, m.readings, m.refused, m.retries, m.days, m.unknownTenant, m.recompute,
			m.agentStatus, m.failures, m.dirty, m.setAside, m.oldestDirty, m.anomalies, m.lag)
	}
	return m
}
