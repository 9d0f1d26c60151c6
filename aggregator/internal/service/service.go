// Package service runs the aggregator: a Kafka consumer group over the events topic
// (so equipment are spread over instances by partition) that saves observations, and
// a loop that recomputes the windows of dirty equipment-days.
//
// Contract: Kafka offsets are committed after the observations they carry are in
// PostgreSQL (at-least-once; saving is idempotent). Windows are recomputed from what
// is stored, so late and out-of-order events land in their windows, and a replay of
// the topic from the start gives the same table.
package service

import (
	"context"
	"errors"
	"log/slog"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/segmentio/kafka-go"
	"golang.org/x/sync/errgroup"

	"takt.dev/plant/store"
	"takt.dev/schemas"
)

// Config shapes the aggregator. Zero fields take defaults.
type Config struct {
	KafkaBrokers   []string
	Group          string        // default takt-aggregator
	Topic          string        // default schemas.KafkaEvents
	BatchRecords   int           // records saved per transaction, at most; default 500
	Linger         time.Duration // a batch waits at most this long; default 200ms
	RecomputeEvery time.Duration // how often dirty days are looked for; default 2s
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
	if cfg.Topic == "" {
		cfg.Topic = schemas.KafkaEvents
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
	st.UnknownTenantDays = m.unknownTenant
	return &Service{cfg: cfg, store: st, log: log, now: now, m: m}, nil
}

// Run consumes and recomputes until ctx ends.
func (s *Service) Run(ctx context.Context) error {
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
	r := kafka.NewReader(kafka.ReaderConfig{Brokers: s.cfg.KafkaBrokers, GroupID: s.cfg.Group, Topic: s.cfg.Topic,
		StartOffset: kafka.FirstOffset, MaxWait: 100 * time.Millisecond, CommitInterval: 0})
	defer r.Close()
	for {
		var batch []kafka.Message
		var envs []*schemas.Envelope
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
				time.Sleep(200 * time.Millisecond)
				continue
			}
			batch = append(batch, m)
			env, err := schemas.Decode(m.Value)
			if err != nil {
				s.m.refused.Inc() // the bridge validated it; someone else wrote this
				s.log.Warn("event record refused", "partition", m.Partition, "offset", m.Offset, "err", err)
				continue
			}
			envs = append(envs, env)
		}
		for {
			st, rd, err := s.store.Save(ctx, envs)
			if err == nil {
				s.m.states.Add(float64(st))
				s.m.readings.Add(float64(rd))
				break
			}
			if ctx.Err() != nil {
				return ctx.Err()
			}
			s.m.retries.Inc()
			s.log.Warn("saving events failed; retrying", "err", err)
			time.Sleep(time.Second)
		}
		if err := r.CommitMessages(ctx, batch...); err != nil && ctx.Err() == nil {
			s.log.Warn("offset commit failed; the records will be saved again (idempotent)", "err", err)
		}
	}
}

func (s *Service) recompute(ctx context.Context) error {
	tick := time.NewTicker(s.cfg.RecomputeEvery)
	defer tick.Stop()
	for {
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-tick.C:
		}
		for ctx.Err() == nil {
			start := time.Now()
			found, err := s.store.Recompute(ctx, s.now())
			if err != nil {
				if ctx.Err() == nil {
					s.m.retries.Inc()
					s.log.Warn("recomputing windows failed; retrying", "err", err)
				}
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

type metrics struct {
	states, readings, refused, retries, days, unknownTenant prometheus.Counter
	recompute                                               prometheus.Histogram
}

func newMetrics(reg prometheus.Registerer) *metrics {
	m := &metrics{
		states:   prometheus.NewCounter(prometheus.CounterOpts{Name: "takt_aggregator_state_observations_total", Help: "State samples saved."}),
		readings: prometheus.NewCounter(prometheus.CounterOpts{Name: "takt_aggregator_counter_readings_total", Help: "Counter samples saved."}),
		refused:  prometheus.NewCounter(prometheus.CounterOpts{Name: "takt_aggregator_refused_records_total", Help: "Event records that are not valid envelopes."}),
		retries:  prometheus.NewCounter(prometheus.CounterOpts{Name: "takt_aggregator_retries_total", Help: "Database operations retried."}),
		days:     prometheus.NewCounter(prometheus.CounterOpts{Name: "takt_aggregator_days_computed_total", Help: "Equipment-days whose windows were computed."}),
		unknownTenant: prometheus.NewCounter(prometheus.CounterOpts{Name: "takt_aggregator_unknown_tenant_days_total",
			Help: "Equipment-days not computed because their tenant is not registered (their observations are kept)."}),
		recompute: prometheus.NewHistogram(prometheus.HistogramOpts{Name: "takt_aggregator_recompute_seconds", Help: "Time to compute and write one equipment-day.", Buckets: prometheus.ExponentialBuckets(0.001, 2, 14)}),
	}
	if reg != nil {
		reg.MustRegister(m.states, m.readings, m.refused, m.retries, m.days, m.unknownTenant, m.recompute)
	}
	return m
}
