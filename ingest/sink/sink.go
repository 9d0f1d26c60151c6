// Package sink writes the samples topic into PostgreSQL, exactly once.
//
// Contract: a Sink is a member of a Kafka consumer group, but its positions live in
// PostgreSQL (table sink_offset), not in Kafka. For each partition it is assigned, it
// starts from the offset stored there, and it writes every batch (pgx CopyFrom into
// the daily partitions of samples) in one transaction that also stores the offset of
// the next record. Rows and position therefore never disagree: after a crash the sink
// resumes exactly where its last commit left off. Duplicate envelopes from the
// at-least-once links upstream are dropped by their identity (tenant, agent, first
// seq) in sink_envelope, in the same transaction, whatever order they arrive in.
//
// A record that is not a valid envelope, or an envelope PostgreSQL refuses for good,
// goes to the dead-letter topic (acks=all, before the transaction commits) instead of
// stalling its partition. Transient database errors are retried with backoff. When
// PostgreSQL is slow the sink stops fetching: memory is bounded by the batch size and
// the reader's queue. On shutdown it commits the batch it holds, then leaves the group.
package sink

import (
	"context"
	"crypto/tls"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/cenkalti/backoff/v5"
	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"
	"github.com/jackc/pgx/v5/pgxpool"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/segmentio/kafka-go"
	"github.com/segmentio/kafka-go/sasl"

	"takt.dev/schemas"
	"takt.dev/servicekit"
	"takt.dev/servicekit/tracekafka"
	"takt.dev/servicekit/tracing"
)

// Config is a sink's configuration. Zero fields take the defaults of Defaults.
type Config struct {
	KafkaBrokers  []string
	KafkaTLS      *tls.Config    // nil: plain (kafkalink builds these from the kafka: block)
	KafkaSASL     sasl.Mechanism // nil: none
	Group         string         // consumer group; also the key of the stored positions
	Topic         string         // default TopicPrefix + schemas.KafkaSamples
	TopicPrefix   string         // in front of every topic: the samples and the dead-letter topic
	BatchRows     int            // a batch is written when it holds this many samples
	Linger        time.Duration  // ... or when its first record is this old
	FetchMaxBytes int            // largest fetch response from Kafka, per partition (default 10 MiB)
	QueueCapacity int            // records the reader prefetches per partition (default 100)
	MaxBackoff    time.Duration  // longest wait between retries
	DrainTimeout  time.Duration  // on shutdown, how long to commit the batch held
	// MaxCopies bounds the batches written at once, whatever the partitions this
	// sink reads (default 2): concurrent COPYs into one day's table contend in
	// PostgreSQL (measured on 2 cores: 1 stream 520,000 rows/s, 2 streams 570,000,
	// 4 streams 400,000), while the other partitions go on fetching and decoding.
	MaxCopies int
	Limits    schemas.Limits
	// DeadLetterPayload is how much of a refused record its dead letter keeps (its
	// size and SHA-256 are always kept); default schemas.DefaultDeadLetterPayload.
	DeadLetterPayload int
}

// Defaults fills the zero fields of c.
func (c Config) Defaults() Config {
	if c.Group == "" {
		c.Group = "takt-sink"
	}
	if c.Topic == "" {
		c.Topic = c.TopicPrefix + schemas.KafkaSamples
	}
	if c.BatchRows <= 0 {
		c.BatchRows = 10_000
	}
	if c.Linger <= 0 {
		c.Linger = 200 * time.Millisecond
	}
	if c.FetchMaxBytes <= 0 {
		c.FetchMaxBytes = max(10<<20, c.Limits.KafkaRecordBytes())
	}
	if c.QueueCapacity <= 0 {
		c.QueueCapacity = 100
	}
	if c.MaxBackoff <= 0 {
		c.MaxBackoff = 5 * time.Second
	}
	if c.DrainTimeout <= 0 {
		c.DrainTimeout = 30 * time.Second
	}
	if c.MaxCopies <= 0 {
		c.MaxCopies = 2
	}
	if c.DeadLetterPayload <= 0 {
		c.DeadLetterPayload = schemas.DefaultDeadLetterPayload
	}
	return c
}

// Validate reports the first field that cannot work.
func (c Config) Validate() error {
	if len(c.KafkaBrokers) == 0 {
		return errors.New("kafka.brokers: missing")
	}
	if c.BatchRows > 1_000_000 {
		return fmt.Errorf("sink.batch_rows = %d: at most 1000000", c.BatchRows)
	}
	if largest := c.Limits.KafkaRecordBytes(); c.FetchMaxBytes < largest {
		return fmt.Errorf("sink.fetch_max_bytes = %d: smaller than the largest record (%d: max_message_bytes and 64 KiB of key and headers, at least 1 MiB)", c.FetchMaxBytes, largest)
	}
	if c.QueueCapacity > 10_000 {
		return fmt.Errorf("sink.prefetch_records = %d: at most 10000", c.QueueCapacity)
	}
	if c.MaxCopies > 64 {
		return fmt.Errorf("sink.max_concurrent_copies = %d: at most 64", c.MaxCopies)
	}
	return nil
}

// Sink is one member of a sink consumer group. Run it once.
type Sink struct {
	cfg  Config
	pool *pgxpool.Pool
	log  *slog.Logger
	m    *metrics
	now  func() time.Time
	dlq  *kafka.Writer

	daysMu sync.Mutex
	days   map[int64]bool // UTC days (Unix days) whose sample partition is known to exist

	copies chan struct{} // a slot per batch being written (Config.MaxCopies)
}

// New checks cfg and builds a sink writing through pool, as a login role of
// takt_ingest with BYPASSRLS, or the tables' owner (migration 00019).
func New(cfg Config, pool *pgxpool.Pool, log *slog.Logger, reg prometheus.Registerer) (*Sink, error) {
	cfg = cfg.Defaults()
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	return &Sink{
		cfg: cfg, pool: pool, log: log, m: newMetrics(reg), now: time.Now, days: map[int64]bool{}, copies: make(chan struct{}, cfg.MaxCopies),
		dlq: &kafka.Writer{
			Addr: kafka.TCP(cfg.KafkaBrokers...), Topic: cfg.TopicPrefix + schemas.KafkaDeadLetter, Balancer: &kafka.Hash{},
			Transport:    &kafka.Transport{TLS: cfg.KafkaTLS, SASL: cfg.KafkaSASL, DialTimeout: 10 * time.Second},
			RequiredAcks: kafka.RequireAll, BatchTimeout: 5 * time.Millisecond, MaxAttempts: 1,
			// Room for a dead letter at its bound, key and headers (Kafka's default
			// message.max.bytes is 1 MiB; a dead letter keeps at most
			// DeadLetterPayload of the record, so it always fits).
			BatchBytes: int64(max(1<<20, schemas.DeadLetterBound(cfg.DeadLetterPayload)+8<<10)),
		},
	}, nil
}

// Run consumes until ctx is done, then commits what it holds and leaves the group.
func (s *Sink) Run(ctx context.Context) error {
	defer s.dlq.Close()
	if err := s.checkRole(ctx); err != nil {
		return err
	}
	group, err := kafka.NewConsumerGroup(kafka.ConsumerGroupConfig{
		ID: s.cfg.Group, Brokers: s.cfg.KafkaBrokers, Topics: []string{s.cfg.Topic}, Dialer: s.dialer(),
		StartOffset: kafka.FirstOffset, WatchPartitionChanges: true,
		HeartbeatInterval: time.Second, SessionTimeout: 10 * time.Second, RebalanceTimeout: 10 * time.Second,
	})
	if err != nil {
		return fmt.Errorf("sink: consumer group: %w", err)
	}
	var consumers sync.WaitGroup
	ictx, stopIndex := context.WithCancel(ctx)
	defer func() {
		stopIndex()
		group.Close()
		consumers.Wait()
	}()
	consumers.Add(1)
	go func() {
		defer consumers.Done()
		s.indexDeadLetters(ictx)
	}()
	backoff := s.backoff()
	for {
		gen, err := group.Next(ctx)
		if err != nil {
			if ctx.Err() != nil || errors.Is(err, kafka.ErrGroupClosed) {
				return nil
			}
			s.log.Warn("joining the consumer group failed; retrying", "group", s.cfg.Group, "err", err)
			if !servicekit.Wait(ctx, backoff) {
				return nil
			}
			continue
		}
		backoff.Reset()
		assigned := gen.Assignments[s.cfg.Topic]
		offsets, err := s.loadOffsets(ctx, assigned)
		if err != nil {
			if ctx.Err() != nil {
				return nil
			}
			s.log.Warn("reading stored offsets failed; rejoining", "err", err)
			continue // the generation ends with no partition started: the group rebalances
		}
		s.log.Info("partitions assigned", "generation", gen.ID, "partitions", len(assigned))
		for _, a := range assigned {
			partition, offset := a.ID, offsets[a.ID]
			consumers.Add(1)
			gen.Start(func(gctx context.Context) {
				defer consumers.Done()
				s.consume(gctx, partition, offset)
			})
		}
	}
}

// loadOffsets returns the stored next offset of each assigned partition, or
// kafka.FirstOffset for a partition with none stored.
func (s *Sink) loadOffsets(ctx context.Context, assigned []kafka.PartitionAssignment) (map[int]int64, error) {
	out := make(map[int]int64, len(assigned))
	ids := make([]int32, 0, len(assigned))
	for _, a := range assigned {
		out[a.ID] = kafka.FirstOffset
		ids = append(ids, int32(a.ID))
	}
	rows, err := s.pool.Query(ctx, `SELECT partition, next_offset FROM sink_offset
		WHERE consumer_group = $1 AND topic = $2 AND partition = ANY($3)`, s.cfg.Group, s.cfg.Topic, ids)
	if err != nil {
		return nil, err
	}
	defer rows.Close()
	for rows.Next() {
		var p int
		var off int64
		if err := rows.Scan(&p, &off); err != nil {
			return nil, err
		}
		out[p] = off
	}
	return out, rows.Err()
}

// item is one fetched record, decoded.
type item struct {
	msg kafka.Message
	env *schemas.Envelope // nil when the record is refused
	err error             // why it is refused
}

// consume reads one partition from offset until gctx ends (rebalance or shutdown).
func (s *Sink) consume(gctx context.Context, partition int, offset int64) {
	r := kafka.NewReader(kafka.ReaderConfig{
		Brokers: s.cfg.KafkaBrokers, Topic: s.cfg.Topic, Partition: partition, Dialer: s.dialer(),
		MinBytes: 1, MaxBytes: s.cfg.FetchMaxBytes, MaxWait: 100 * time.Millisecond,
		QueueCapacity: s.cfg.QueueCapacity,
	})
	defer r.Close()
	if err := r.SetOffset(offset); err != nil {
		s.log.Error("set offset", "partition", partition, "offset", offset, "err", err)
		return
	}
	label := strconv.Itoa(partition)
	fetchBackoff := s.backoff()
	var batch []item
	rows := 0
	var first time.Time
	flush := func(ctx context.Context) bool {
		if len(batch) == 0 {
			return true
		}
		if !s.flush(ctx, partition, batch) {
			return false
		}
		batch, rows = batch[:0], 0
		return true
	}
	for {
		fctx, cancel := gctx, context.CancelFunc(func() {})
		if len(batch) > 0 {
			fctx, cancel = context.WithDeadline(gctx, first.Add(s.cfg.Linger))
		}
		msg, err := r.FetchMessage(fctx)
		cancel()
		switch {
		case err == nil:
			fetchBackoff.Reset()
			if len(batch) == 0 {
				first = s.now()
			}
			it := item{msg: msg}
			it.env, it.err = s.cfg.Limits.Decode(msg.Value)
			if it.env != nil {
				rows += len(it.env.Samples)
			}
			batch = append(batch, it)
			s.m.lag.WithLabelValues(label).Set(float64(msg.HighWaterMark - msg.Offset - 1))
			if rows >= s.cfg.BatchRows {
				if !flush(gctx) {
					return
				}
			}
		case gctx.Err() != nil:
			// Rebalance or shutdown: commit what we hold, with a bounded budget.
			dctx, dcancel := context.WithTimeout(context.Background(), s.cfg.DrainTimeout)
			flush(dctx)
			dcancel()
			return
		case errors.Is(err, context.DeadlineExceeded):
			if !flush(gctx) {
				return
			}
		default:
			s.log.Warn("fetch failed; retrying", "partition", partition, "err", err)
			if !servicekit.Wait(gctx, fetchBackoff) {
				continue // the next fetch sees gctx ended and commits what is held
			}
		}
	}
}

// flush writes a batch and its next offset in one transaction, retrying transient
// failures until ctx ends. It returns false when ctx ended first (nothing committed).
func (s *Sink) flush(ctx context.Context, partition int, batch []item) bool {
	start := time.Now()
	if tracing.Enabled() {
		records := make([]kafka.Message, len(batch))
		for i := range batch {
			records[i] = batch[i].msg
		}
		var end func()
		ctx, end = tracekafka.ConsumeBatch(ctx, tracer, "sink batch", records)
		defer end()
	}
	if err := s.ensurePartitions(ctx, batch); err != nil && ctx.Err() != nil {
		return false
	}
	backoff := s.backoff()
	for {
		res, err := s.commitInSlot(ctx, partition, batch)
		if err == nil {
			s.m.rows.Add(float64(res.rows))
			s.m.envelopes.Add(float64(res.envelopes))
			s.m.duplicates.Add(float64(res.duplicates))
			s.m.batchRows.Observe(float64(res.rows))
			s.m.commitSeconds.Observe(time.Since(start).Seconds())
			return true
		}
		if ctx.Err() != nil {
			return false
		}
		s.m.retries.Inc()
		s.log.Warn("batch not committed; retrying", "partition", partition, "records", len(batch), "err", err)
		if !servicekit.Wait(ctx, backoff) {
			return false
		}
	}
}

type result struct{ rows, envelopes, duplicates int }

// commitInSlot is commit once one of the MaxCopies slots is free.
func (s *Sink) commitInSlot(ctx context.Context, partition int, batch []item) (result, error) {
	select {
	case s.copies <- struct{}{}:
	default:
		s.m.copyWaits.Inc()
		select {
		case s.copies <- struct{}{}:
		case <-ctx.Done():
			return result{}, ctx.Err()
		}
	}
	defer func() { <-s.copies }()
	return s.commit(ctx, partition, batch)
}

var tracer = tracing.Tracer("sink")

func (s *Sink) commit(ctx context.Context, partition int, batch []item) (result, error) {
	var res result
	tx, err := s.pool.Begin(ctx)
	if err != nil {
		return res, err
	}
	defer tx.Rollback(context.Background())

	// 1. Claim the envelopes: the ones already present are duplicates, or conflicts
	// when the stored claim does not match.
	var claims claimSet
	for _, it := range batch {
		if it.env != nil {
			claims.add(it.env)
		}
	}
	fresh := map[envelopeID]bool{}
	stored := map[envelopeID]claim{}
	if len(claims.tenants) > 0 {
		rows, err := tx.Query(ctx, `INSERT INTO sink_envelope (tenant_id, agent, incarnation, first_seq, last_seq, samples)
			SELECT * FROM unnest($1::text[], $2::text[], $3::text[], $4::bigint[], $5::bigint[], $6::int[])
			ON CONFLICT DO NOTHING RETURNING tenant_id, agent, incarnation, first_seq`,
			claims.tenants, claims.agents, claims.incarnations, claims.firsts, claims.lasts, claims.counts)
		if err != nil {
			return res, err
		}
		for rows.Next() {
			var id envelopeID
			if err := rows.Scan(&id.tenant, &id.agent, &id.incarnation, &id.first); err != nil {
				rows.Close()
				return res, err
			}
			fresh[id] = true
		}
		rows.Close()
		if err := rows.Err(); err != nil {
			return res, err
		}
		if len(fresh) < len(claims.tenants) {
			if stored, err = storedClaims(ctx, tx, batch, fresh); err != nil {
				return res, err
			}
		}
	}

	// 2. Copy the rows of the fresh envelopes, all at once; if the database refuses
	// the batch for its data, envelope by envelope so that only the bad ones go aside.
	var todo []*schemas.Envelope
	var dead []kafka.Message
	for _, it := range batch {
		if it.env == nil {
			dead = append(dead, s.deadLetter(it.msg, it.err))
			continue
		}
		id := idOf(it.env)
		if !fresh[id] {
			if c, ok := stored[id]; ok && c != claimOf(it.env) {
				dead = append(dead, s.deadLetter(it.msg, conflictError(id, c, it.env)))
				continue
			}
			res.duplicates++
			continue
		}
		delete(fresh, id) // a second copy in the same batch is a duplicate (or a conflict) too
		stored[id] = claimOf(it.env)
		todo = append(todo, it.env)
	}
	if len(todo) > 0 {
		n, err := copySamples(ctx, tx, todo)
		if err != nil {
			if !isDataError(err) {
				return res, err
			}
			// Redo envelope by envelope under savepoints.
			_ = tx.Rollback(ctx)
			return s.commitOneByOne(ctx, partition, batch)
		}
		res.rows, res.envelopes = n, len(todo)
	}

	return res, s.finish(ctx, tx, partition, batch, dead)
}

// commitOneByOne is the slow path for a batch the database refused: each envelope in
// a savepoint of its own, the refused ones to the dead-letter topic.
func (s *Sink) commitOneByOne(ctx context.Context, partition int, batch []item) (result, error) {
	var res result
	tx, err := s.pool.Begin(ctx)
	if err != nil {
		return res, err
	}
	defer tx.Rollback(context.Background())
	var dead []kafka.Message
	seen := map[envelopeID]claim{}
	for _, it := range batch {
		if it.env == nil {
			dead = append(dead, s.deadLetter(it.msg, it.err))
			continue
		}
		id, mine := idOf(it.env), claimOf(it.env)
		if c, ok := seen[id]; ok {
			if c != mine {
				dead = append(dead, s.deadLetter(it.msg, conflictError(id, c, it.env)))
				continue
			}
			res.duplicates++
			continue
		}
		sp, err := tx.Begin(ctx) // a savepoint
		if err != nil {
			return res, err
		}
		var c claim
		err = sp.QueryRow(ctx, `WITH claimed AS (
				INSERT INTO sink_envelope (tenant_id, agent, incarnation, first_seq, last_seq, samples)
				VALUES ($1, $2, $3, $4, $5, $6) ON CONFLICT DO NOTHING RETURNING last_seq, samples)
			SELECT last_seq, samples, true FROM claimed
			UNION ALL
			SELECT last_seq, samples, false FROM sink_envelope
			WHERE tenant_id = $1 AND agent = $2 AND incarnation = $3 AND first_seq = $4 AND NOT EXISTS (SELECT 1 FROM claimed)`,
			id.tenant, id.agent, id.incarnation, id.first, mine.last, mine.samples).Scan(&c.last, &c.samples, &c.fresh)
		if err != nil {
			sp.Rollback(ctx)
			return res, err
		}
		if !c.fresh {
			sp.Rollback(ctx)
			seen[id] = claim{last: c.last, samples: c.samples}
			if seen[id] != mine {
				dead = append(dead, s.deadLetter(it.msg, conflictError(id, seen[id], it.env)))
				continue
			}
			res.duplicates++
			continue
		}
		seen[id] = mine
		n, err := copySamples(ctx, sp, []*schemas.Envelope{it.env})
		if err != nil {
			sp.Rollback(ctx)
			if !isDataError(err) {
				return res, err
			}
			dead = append(dead, s.deadLetter(it.msg, &schemas.DecodeError{Reason: schemas.ReasonRejectedByDatabase, Err: err}))
			continue
		}
		if err := sp.Commit(ctx); err != nil {
			return res, err
		}
		res.rows += n
		res.envelopes++
	}
	return res, s.finish(ctx, tx, partition, batch, dead)
}

// finish writes the batch's dead letters, durably, before the position moves past
// them, then stores the next offset and commits.
func (s *Sink) finish(ctx context.Context, tx pgx.Tx, partition int, batch []item, dead []kafka.Message) error {
	if len(dead) > 0 {
		err := s.dlq.WriteMessages(ctx, dead...)
		var tooLarge kafka.MessageTooLargeError
		if errors.As(err, &tooLarge) || errors.Is(err, kafka.MessageSizeTooLarge) {
			// The dead-letter topic takes less than the writer: keep the digests only.
			s.log.Warn("dead letters refused as too large by Kafka; writing them without their payloads", "err", err)
			for i := range dead {
				dead[i].Value = withoutPayload(dead[i].Value)
			}
			err = s.dlq.WriteMessages(ctx, dead...)
		}
		if err != nil {
			return fmt.Errorf("dead-letter write: %w", err)
		}
		for _, d := range dead {
			for _, h := range d.Headers {
				if h.Key == "takt-reason" {
					s.m.deadLetters.WithLabelValues(string(h.Value)).Inc() // letters written, not attempts
				}
			}
		}
	}
	_, err := tx.Exec(ctx, `INSERT INTO sink_offset (consumer_group, topic, partition, next_offset, updated_at)
		VALUES ($1, $2, $3, $4, now())
		ON CONFLICT (consumer_group, topic, partition) DO UPDATE SET next_offset = EXCLUDED.next_offset, updated_at = now()`,
		s.cfg.Group, s.cfg.Topic, partition, batch[len(batch)-1].msg.Offset+1)
	if err != nil {
		return err
	}
	return tx.Commit(ctx)
}

// ensurePartitions creates the daily partitions the batch needs and that are not
// known to exist. Rows for a day without one would still land (in the default
// partition); this keeps them where retention and BRIN expect them.
func (s *Sink) ensurePartitions(ctx context.Context, batch []item) error {
	s.daysMu.Lock() // held while creating, so no consumer copies into a day being made
	defer s.daysMu.Unlock()
	for _, it := range batch {
		if it.env == nil {
			continue
		}
		// Partitions only for the days of the timestamp window the bridge accepts
		// (a day of slack either side): rows of other days, which only a writer other
		// than the bridge can send, land in the default partition, so that no clock
		// gone wrong makes a table for every day it names.
		from, to := s.cfg.Limits.Window(s.now())
		lo, hi := unixDay(from)-1, unixDay(to)+1
		for i := range it.env.Samples {
			d := unixDay(it.env.Samples[i].TS) // no formatting per sample: this runs for every row
			if s.days[d] {
				continue
			}
			if d < lo || d > hi {
				s.m.outsideWindow.Inc()
				continue
			}
			day := time.Unix(d*86400, 0).UTC().Format(time.DateOnly)
			var created int
			if err := s.pool.QueryRow(ctx, `SELECT takt_ensure_sample_partitions($1::date, 1)`, day).Scan(&created); err != nil {
				s.log.Warn("creating a sample partition failed; its rows go to the default partition until a later batch creates it", "day", day, "err", err)
				return err
			}
			s.days[d] = true
			s.m.partitionsCreated.Add(float64(created))
		}
	}
	return nil
}

// checkRole refuses to start as a role the sink's writes would fail for on every
// batch: PostgreSQL refuses COPY into samples to a role row-level security applies
// to, and a role without the grants of takt_ingest. When the database cannot be
// reached yet, the sink starts and retries as for any transient error.
func (s *Sink) checkRole(ctx context.Context) error {
	ctx, cancel := context.WithTimeout(ctx, 10*time.Second)
	defer cancel()
	var role string
	var rls, insert, partitions bool
	err := s.pool.QueryRow(ctx, `SELECT current_user, row_security_active('samples'), has_table_privilege('samples', 'INSERT'),
		has_function_privilege('takt_ensure_sample_partitions(date, integer)', 'EXECUTE')`).Scan(&role, &rls, &insert, &partitions)
	var pgErr *pgconn.PgError
	switch {
	case errors.As(err, &pgErr):
		return fmt.Errorf("sink: checking the database role's privileges: %w (are the migrations applied? takt-migrate up)", err)
	case err != nil:
		s.log.Warn("could not check the database role's privileges; the database is not reachable yet", "err", err)
		return nil
	case rls:
		return fmt.Errorf("sink: database role %q is subject to row-level security on samples, and PostgreSQL refuses COPY to such a role: "+
			"log in as a role with BYPASSRLS that is a member of takt_ingest (CREATE ROLE ... LOGIN BYPASSRLS IN ROLE takt_ingest; see docs/security.md)", role)
	case !insert || !partitions:
		return fmt.Errorf("sink: database role %q may not insert into samples or create its partitions: make it a member of takt_ingest (GRANT takt_ingest TO %s)", role, role)
	}
	return nil
}

// dialer connects readers and the consumer group as the configuration says.
func (s *Sink) dialer() *kafka.Dialer {
	return &kafka.Dialer{Timeout: 10 * time.Second, DualStack: true, TLS: s.cfg.KafkaTLS, SASLMechanism: s.cfg.KafkaSASL}
}

// backoff is the retry policy of the sink's loops: from 50 ms to MaxBackoff.
func (s *Sink) backoff() *backoff.ExponentialBackOff {
	return servicekit.Backoff(50*time.Millisecond, s.cfg.MaxBackoff)
}

// unixDay is the number of the UTC day of t since 1970-01-01.
func unixDay(t time.Time) int64 {
	sec := t.Unix()
	d := sec / 86400
	if sec < 0 && sec%86400 != 0 {
		d-- // floor, for times before 1970
	}
	return d
}

// envelopeID is an envelope's identity: a resend has the same one.
type envelopeID struct {
	tenant, agent, incarnation string
	first                      int64
}

func idOf(e *schemas.Envelope) envelopeID {
	return envelopeID{e.Tenant, e.Agent, e.Incarnation, int64(e.Samples[0].Seq)}
}

// claim is what sink_envelope keeps of an envelope besides its identity: a resend
// matches it, a different envelope with the same identity does not.
type claim struct {
	last    int64
	samples int32
	fresh   bool // only while reading a claim back: whether this insert made it
}

func claimOf(e *schemas.Envelope) claim {
	return claim{last: int64(e.Samples[len(e.Samples)-1].Seq), samples: int32(len(e.Samples))}
}

// claimSet holds a batch's claims as the columns of one unnest insert.
type claimSet struct {
	tenants, agents, incarnations []string
	firsts, lasts                 []int64
	counts                        []int32
}

func (c *claimSet) add(e *schemas.Envelope) {
	id, cl := idOf(e), claimOf(e)
	c.tenants, c.agents, c.incarnations = append(c.tenants, id.tenant), append(c.agents, id.agent), append(c.incarnations, id.incarnation)
	c.firsts, c.lasts, c.counts = append(c.firsts, id.first), append(c.lasts, cl.last), append(c.counts, cl.samples)
}

// storedClaims reads back the claims of the batch's envelopes that this
// transaction did not make (fresh): they were stored before.
func storedClaims(ctx context.Context, tx pgx.Tx, batch []item, fresh map[envelopeID]bool) (map[envelopeID]claim, error) {
	var old claimSet
	for _, it := range batch {
		if it.env != nil && !fresh[idOf(it.env)] {
			old.add(it.env)
		}
	}
	rows, err := tx.Query(ctx, `SELECT e.tenant_id, e.agent, e.incarnation, e.first_seq, e.last_seq, e.samples
		FROM sink_envelope e JOIN unnest($1::text[], $2::text[], $3::text[], $4::bigint[]) AS k(t, a, i, f)
		ON e.tenant_id = k.t AND e.agent = k.a AND e.incarnation = k.i AND e.first_seq = k.f`,
		old.tenants, old.agents, old.incarnations, old.firsts)
	if err != nil {
		return nil, err
	}
	defer rows.Close()
	out := map[envelopeID]claim{}
	for rows.Next() {
		var id envelopeID
		var c claim
		if err := rows.Scan(&id.tenant, &id.agent, &id.incarnation, &id.first, &c.last, &c.samples); err != nil {
			return nil, err
		}
		out[id] = c
	}
	return out, rows.Err()
}

// conflictError says how an envelope differs from the stored one of its identity.
func conflictError(id envelopeID, stored claim, e *schemas.Envelope) error {
	got := claimOf(e)
	return &schemas.DecodeError{Reason: schemas.ReasonIdentityConflict, Err: fmt.Errorf(
		"agent %q incarnation %q first seq %d is already stored with %d samples up to seq %d; this envelope has %d samples up to seq %d (a different envelope under the same identity: an agent whose seq started over without a new incarnation?)",
		id.agent, id.incarnation, id.first, stored.samples, stored.last, got.samples, got.last)}
}

// isDataError reports whether PostgreSQL refused the data itself (SQLSTATE classes
// 22 data exception and 23 integrity constraint violation), which no retry fixes.
// A row refused by a partition's constraint is not one: rows are routed by their
// timestamp, so that only happens when a partition was attached while the row was on
// its way into the default partition (takt-migrate partitions, or another sink making a
// day's partition), and the retry routes it to the new partition.
func isDataError(err error) bool {
	var pg *pgconn.PgError
	if !errors.As(err, &pg) || len(pg.Code) != 5 {
		return false
	}
	if pg.Code == "23514" && strings.Contains(pg.Message, "violates partition constraint") {
		return false
	}
	return pg.Code[:2] == "22" || pg.Code[:2] == "23"
}

// deadLetter builds the dead letter of a record, bounded in size; it is counted when
// written.
func (s *Sink) deadLetter(msg kafka.Message, err error) kafka.Message {
	dl := schemas.NewDeadLetter(err, fmt.Sprintf("kafka:%s/%d@%d", msg.Topic, msg.Partition, msg.Offset), s.now(), msg.Value, s.cfg.DeadLetterPayload)
	s.log.Warn("dead letter", "partition", msg.Partition, "offset", msg.Offset, "reason", dl.Reason, "err", dl.Error, "bytes", dl.PayloadBytes)
	value, _ := json.Marshal(dl)
	key := msg.Key
	if len(key) > schemas.MaxDeadLetterSource {
		key = key[:schemas.MaxDeadLetterSource]
	}
	return kafka.Message{Key: key, Value: value, Headers: []kafka.Header{{Key: "takt-reason", Value: []byte(dl.Reason)}}}
}

// withoutPayload drops a dead letter's payload, keeping its size and digest.
func withoutPayload(value []byte) []byte {
	var dl schemas.DeadLetter
	if json.Unmarshal(value, &dl) != nil {
		return value
	}
	dl.Payload, dl.Truncated = nil, true
	b, _ := json.Marshal(dl)
	return b
}
