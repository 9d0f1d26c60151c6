package deadletter

import (
	"context"
	"fmt"
	"strconv"
	"strings"
	"time"

	"github.com/jackc/pgx/v5/pgxpool"
	"github.com/segmentio/kafka-go"

	"takt.dev/ingest/bridge"
	"takt.dev/schemas"
	"takt.dev/servicekit/kafkalink"
)

// Options configure a replay.
type Options struct {
	Limits schemas.Limits // the bridge's rules, as configured now
	Marks  *Marks         // nil: replayed letters are not noted (a rerun replays them again, harmlessly)
	Again  bool           // replay letters noted as replayed before
	DryRun bool           // check and count, write nothing
	Batch  int            // letters per Kafka write; default 100
	// Progress, if set, is called after every batch.
	Progress func(Report)
}

// Report counts what a replay did.
type Report struct {
	Matched         int                    // letters the filter selected
	Replayed        int                    // letters written back to the samples topic
	Samples         int                    // samples in them
	AlreadyReplayed int                    // skipped: replayed before (see Options.Again)
	NotReplayable   map[string]int         // skipped, by why
	StillRefused    map[schemas.Reason]int // checked again and refused again, by reason
}

func (r Report) String() string {
	var b strings.Builder
	fmt.Fprintf(&b, "%d letters matched: %d replayed (%d samples), %d already replayed", r.Matched, r.Replayed, r.Samples, r.AlreadyReplayed)
	for why, n := range r.NotReplayable {
		fmt.Fprintf(&b, "; %d not replayable (%s)", n, why)
	}
	for reason, n := range r.StillRefused {
		fmt.Fprintf(&b, "; %d still refused (%s)", n, reason)
	}
	return b.String()
}

// Replay reads the letters of the dead-letter topic that f selects and writes the
// ones that now pass the bridge's checks back to the samples (and events) topics.
func Replay(ctx context.Context, link kafkalink.Link, f Filter, opt Options, log func(string)) (Report, error) {
	rep := Report{NotReplayable: map[string]int{}, StillRefused: map[schemas.Reason]int{}}
	if opt.Batch <= 0 {
		opt.Batch = 100
	}
	transport, err := link.Transport()
	if err != nil {
		return rep, err
	}
	w := &kafka.Writer{Addr: kafka.TCP(link.Brokers...), Transport: transport, Balancer: &kafka.Hash{}, RequiredAcks: kafka.RequireAll,
		BatchTimeout: 5 * time.Millisecond, BatchBytes: 64 << 20}
	defer w.Close()
	var batch []*Letter
	flush := func() error {
		if len(batch) == 0 {
			return nil
		}
		defer func() { batch = batch[:0] }()
		done := map[LetterID]bool{}
		if opt.Marks != nil && !opt.Again {
			var err error
			if done, err = opt.Marks.Replayed(ctx, batch); err != nil {
				return err
			}
		}
		var recs []kafka.Message
		var replayed []*Letter
		for _, l := range batch {
			if done[l.ID()] {
				rep.AlreadyReplayed++
				continue
			}
			out, samples, err := bridge.Convert(opt.Limits, l.MQTTTopic(), l.Payload)
			if err != nil {
				reason := schemas.ReasonOf(err)
				rep.StillRefused[reason]++
				log(fmt.Sprintf("partition %d offset %d: still refused: %v", l.Partition, l.Offset, err))
				continue
			}
			for i := range out {
				out[i].Topic = link.Topic(out[i].Topic)
				out[i].Headers = append(out[i].Headers, kafka.Header{Key: "takt-replay-of", Value: []byte(l.ID().String())})
			}
			recs = append(recs, out...)
			replayed = append(replayed, l)
			rep.Samples += samples
		}
		if !opt.DryRun && len(recs) > 0 {
			if err := w.WriteMessages(ctx, recs...); err != nil {
				return fmt.Errorf("writing replayed records: %w", err)
			}
			if opt.Marks != nil {
				if err := opt.Marks.Mark(ctx, replayed); err != nil {
					return fmt.Errorf("noting replayed letters (they are replayed; a rerun would replay them again, harmlessly): %w", err)
				}
			}
		}
		rep.Replayed += len(replayed)
		if opt.Progress != nil {
			opt.Progress(rep)
		}
		return nil
	}
	err = Scan(ctx, link, link.Topic(schemas.KafkaDeadLetter), f, func(l *Letter) error {
		rep.Matched++
		if ok, why := l.Replayable(); !ok {
			rep.NotReplayable[why]++
			return nil
		}
		batch = append(batch, l)
		if len(batch) >= opt.Batch {
			return flush()
		}
		return nil
	}, func(err error) { log(err.Error()) })
	if err == nil {
		err = flush()
	}
	return rep, err
}

// LetterID is where a letter is in the dead-letter topic.
type LetterID struct {
	Partition int
	Offset    int64
}

func (id LetterID) String() string {
	return schemas.KafkaDeadLetter + "/" + strconv.Itoa(id.Partition) + "@" + strconv.FormatInt(id.Offset, 10)
}

// ID returns where l is.
func (l *Letter) ID() LetterID { return LetterID{l.Partition, l.Offset} }

// Marks notes replayed letters in PostgreSQL (dead_letter.replayed_at).
type Marks struct{ Pool *pgxpool.Pool }

// Replayed returns which of letters were replayed before.
func (m *Marks) Replayed(ctx context.Context, letters []*Letter) (map[LetterID]bool, error) {
	parts, offs := ids(letters)
	rows, err := m.Pool.Query(ctx, `SELECT kafka_partition, kafka_offset FROM dead_letter
		JOIN unnest($1::int[], $2::bigint[]) AS k(p, o) ON kafka_partition = k.p AND kafka_offset = k.o
		WHERE replayed_at IS NOT NULL`, parts, offs)
	if err != nil {
		return nil, err
	}
	defer rows.Close()
	out := map[LetterID]bool{}
	for rows.Next() {
		var id LetterID
		if err := rows.Scan(&id.Partition, &id.Offset); err != nil {
			return nil, err
		}
		out[id] = true
	}
	return out, rows.Err()
}

// Mark notes letters as replayed now, indexing them if the sink has not yet.
func (m *Marks) Mark(ctx context.Context, letters []*Letter) error {
	if len(letters) == 0 {
		return nil
	}
	tx, err := m.Pool.Begin(ctx)
	if err != nil {
		return err
	}
	defer tx.Rollback(context.Background())
	for _, l := range letters {
		var tenant *string
		if l.Tenant != "" {
			tenant = &l.Tenant
		}
		_, err := tx.Exec(ctx, `INSERT INTO dead_letter (kafka_partition, kafka_offset, tenant_id, received_at, reason, error, source,
			payload_bytes, payload_sha256, truncated, replayed_at) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, now())
			ON CONFLICT (kafka_partition, kafka_offset) DO UPDATE SET replayed_at = now()`,
			l.Partition, l.Offset, tenant, l.ReceivedAt, string(l.Reason), Clean(l.Error), Clean(l.Source), l.PayloadBytes, l.PayloadSHA256, l.Truncated)
		if err != nil {
			return err
		}
	}
	return tx.Commit(ctx)
}

func ids(letters []*Letter) ([]int32, []int64) {
	parts, offs := make([]int32, len(letters)), make([]int64, len(letters))
	for i, l := range letters {
		parts[i], offs[i] = int32(l.Partition), l.Offset
	}
	return parts, offs
}

// Clean makes text storable in PostgreSQL: valid UTF-8 without NUL.
func Clean(s string) string {
	return strings.ToValidUTF8(strings.ReplaceAll(s, "\x00", ""), "?")
}
