package sink

import (
	"context"
	"encoding/json"
	"time"

	"github.com/segmentio/kafka-go"

	"takt.dev/ingest/deadletter"
	"takt.dev/schemas"
	"takt.dev/servicekit"
)

// indexDeadLetters keeps the dead_letter table, an index of the dead-letter topic:
// one row per letter (idempotently, by partition and offset), with the tenant the
// letter's topic or key names, so that a tenant sees its refused data through the
// API. It commits a letter's position after its row is in PostgreSQL (at-least-once,
// the insert is idempotent). It runs until ctx ends.
func (s *Sink) indexDeadLetters(ctx context.Context) {
	r := kafka.NewReader(kafka.ReaderConfig{Brokers: s.cfg.KafkaBrokers, GroupID: s.cfg.Group + "-deadletters", Dialer: s.dialer(),
		Topic: s.cfg.TopicPrefix + schemas.KafkaDeadLetter, StartOffset: kafka.FirstOffset, MaxWait: 500 * time.Millisecond})
	defer r.Close()
	backoff := s.backoff()
	for {
		m, err := r.FetchMessage(ctx)
		if err != nil {
			if ctx.Err() != nil {
				return
			}
			s.log.Warn("reading the dead-letter topic failed; retrying", "err", err)
			if !servicekit.Wait(ctx, backoff) {
				return
			}
			continue
		}
		row := indexRow(m)
		for {
			_, err := s.pool.Exec(ctx, `INSERT INTO dead_letter (kafka_partition, kafka_offset, tenant_id, received_at, reason, error, source,
				payload_bytes, payload_sha256, truncated) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10) ON CONFLICT DO NOTHING`,
				m.Partition, m.Offset, row.tenant, row.ReceivedAt, string(row.Reason), row.Error, row.Source,
				row.PayloadBytes, row.PayloadSHA256, row.Truncated)
			if err == nil {
				s.m.deadLettersIndexed.Inc()
				break
			}
			if ctx.Err() != nil {
				return
			}
			if isDataError(err) { // deterministic: skip this letter, say so once
				s.log.Warn("a dead letter cannot be indexed; skipped", "partition", m.Partition, "offset", m.Offset, "err", err)
				break
			}
			s.log.Warn("indexing a dead letter failed; retrying", "err", err)
			if !servicekit.Wait(ctx, backoff) {
				return
			}
		}
		backoff.Reset()
		if err := r.CommitMessages(ctx, m); err != nil && ctx.Err() == nil {
			s.log.Warn("committing the dead-letter index position failed; the letters will be indexed again (idempotent)", "err", err)
		}
	}
}

type indexed struct {
	schemas.DeadLetter
	tenant *string
}

// indexRow reads a letter; one that is not DeadLetter JSON (written by someone
// else) is indexed as such.
func indexRow(m kafka.Message) indexed {
	var row indexed
	if err := json.Unmarshal(m.Value, &row.DeadLetter); err != nil || row.Reason == "" {
		row.DeadLetter = schemas.NewDeadLetter(&schemas.DecodeError{Reason: schemas.ReasonMalformed, Err: err}, "kafka:"+schemas.KafkaDeadLetter, m.Time, m.Value, 1)
		if err == nil {
			row.Error = "not a dead letter: no reason"
		}
	}
	if row.ReceivedAt.IsZero() {
		row.ReceivedAt = m.Time
	}
	if row.PayloadSHA256 == "" { // a letter from before sizes and digests were kept
		d := schemas.NewDeadLetter(errString(row.Error), row.Source, row.ReceivedAt, row.Payload, len(row.Payload)+1)
		row.PayloadBytes, row.PayloadSHA256 = d.PayloadBytes, d.PayloadSHA256
	}
	row.Error, row.Source = deadletter.Clean(row.Error), deadletter.Clean(row.Source)
	row.tenant = deadletter.TenantOf(row.Source, string(m.Key))
	return row
}

type errString string

func (e errString) Error() string { return string(e) }
