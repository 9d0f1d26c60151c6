// Package deadletter reads, filters and replays the dead-letter topic
// (schemas.KafkaDeadLetter), for takt-ingest deadletter list|replay.
//
// Contract: Scan reads every partition from its first offset up to the end it had
// when Scan began (a snapshot: letters written meanwhile wait for the next run) and
// hands over the letters a Filter matches, in partition and offset order. Replay
// sends a letter's payload through the bridge's own checks (bridge.Convert) with
// the current limits, and writes what passes to the samples and events topics as
// the bridge would; what is still refused is reported with its reason, never
// retried. Replay is exactly-once in storage: the sink drops an envelope it already
// holds by its identity, so a letter replayed twice (a rerun after a crash) stores
// its samples once; a store of replayed letters (Marks) lets a rerun skip them.
package deadletter

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"slices"
	"strings"
	"time"

	"github.com/segmentio/kafka-go"

	"takt.dev/schemas"
	"takt.dev/servicekit/kafkalink"
)

// Letter is one record of the dead-letter topic.
type Letter struct {
	Partition int
	Offset    int64
	Key       string
	Tenant    string // "" when nothing in the letter names one
	schemas.DeadLetter
}

// Replayable says whether the letter holds what was refused whole, and if not why.
func (l *Letter) Replayable() (bool, string) {
	switch {
	case l.Truncated || len(l.Payload) != l.PayloadBytes:
		return false, fmt.Sprintf("payload cut to %d of %d bytes (dead_letter.max_payload_bytes): only its digest is left", len(l.Payload), l.PayloadBytes)
	case strings.HasPrefix(l.Source, "mqtt:"+schemas.StatusRoot+"/"):
		return false, "an agent status message: it describes a moment, and is not replayed"
	}
	return true, ""
}

// Decode reads a dead-letter record.
func Decode(m kafka.Message) (*Letter, error) {
	l := &Letter{Partition: m.Partition, Offset: m.Offset, Key: string(m.Key)}
	if err := json.Unmarshal(m.Value, &l.DeadLetter); err != nil || l.Reason == "" {
		return nil, fmt.Errorf("partition %d offset %d: not a dead letter (%v)", m.Partition, m.Offset, err)
	}
	if l.ReceivedAt.IsZero() {
		l.ReceivedAt = m.Time
	}
	if t := TenantOf(l.Source, l.Key); t != nil {
		l.Tenant = *t
	}
	return l, nil
}

// TenantOf finds the tenant a letter names: the MQTT topic's tenant level, or the
// Kafka key's "{tenant}/..." for letters of the sink. Nil when none is valid.
func TenantOf(source, key string) *string {
	var cand string
	switch {
	case strings.HasPrefix(source, "mqtt:"+schemas.TopicRoot+"/"):
		cand, _, _ = strings.Cut(strings.TrimPrefix(source, "mqtt:"+schemas.TopicRoot+"/"), "/")
	case strings.HasPrefix(source, "mqtt:"+schemas.StatusRoot+"/"):
		cand, _, _ = strings.Cut(strings.TrimPrefix(source, "mqtt:"+schemas.StatusRoot+"/"), "/")
	case strings.HasPrefix(source, "kafka:"):
		cand, _, _ = strings.Cut(key, "/")
	}
	if schemas.CheckName(cand) != nil {
		return nil
	}
	return &cand
}

// MQTTTopic is the MQTT topic the refused message came on, or "" for a letter of
// the sink (refused after the bridge had checked its topic).
func (l *Letter) MQTTTopic() string {
	t, ok := strings.CutPrefix(l.Source, "mqtt:")
	if !ok {
		return ""
	}
	return t
}

// Filter selects letters; zero fields select all.
type Filter struct {
	Reasons []schemas.Reason
	Tenant  string
	Since   time.Time // received at or after
	Until   time.Time // received before
}

// Match reports whether l passes f.
func (f Filter) Match(l *Letter) bool {
	return (len(f.Reasons) == 0 || slices.Contains(f.Reasons, l.Reason)) &&
		(f.Tenant == "" || f.Tenant == l.Tenant) &&
		(f.Since.IsZero() || !l.ReceivedAt.Before(f.Since)) &&
		(f.Until.IsZero() || l.ReceivedAt.Before(f.Until))
}

// Scan hands fn every letter of topic that f matches, up to the end each partition
// had when Scan began. Records that are not dead letters are passed to bad (which
// may be nil) and skipped.
func Scan(ctx context.Context, link kafkalink.Link, topic string, f Filter, fn func(*Letter) error, bad func(error)) error {
	transport, err := link.Transport()
	if err != nil {
		return err
	}
	dialer, err := link.Dialer()
	if err != nil {
		return err
	}
	client := &kafka.Client{Addr: kafka.TCP(link.Brokers...), Timeout: 10 * time.Second, Transport: transport}
	meta, err := client.Metadata(ctx, &kafka.MetadataRequest{Topics: []string{topic}})
	if err != nil {
		return fmt.Errorf("kafka metadata from %v%s: %w", link.Brokers, link.Hint(), err)
	}
	if len(meta.Topics) != 1 || meta.Topics[0].Error != nil {
		var terr error
		if len(meta.Topics) == 1 {
			terr = meta.Topics[0].Error
		}
		return fmt.Errorf("topic %s: %v", topic, terr)
	}
	var reqs []kafka.OffsetRequest
	for _, p := range meta.Topics[0].Partitions {
		reqs = append(reqs, kafka.FirstOffsetOf(p.ID), kafka.LastOffsetOf(p.ID))
	}
	offs, err := client.ListOffsets(ctx, &kafka.ListOffsetsRequest{Topics: map[string][]kafka.OffsetRequest{topic: reqs}})
	if err != nil {
		return fmt.Errorf("kafka offsets: %w", err)
	}
	parts := offs.Topics[topic]
	slices.SortFunc(parts, func(a, b kafka.PartitionOffsets) int { return a.Partition - b.Partition })
	for _, p := range parts {
		if p.Error != nil {
			return fmt.Errorf("topic %s partition %d: %w", topic, p.Partition, p.Error)
		}
		if p.LastOffset <= p.FirstOffset {
			continue
		}
		if err := scanPartition(ctx, link.Brokers, dialer, topic, p.Partition, p.FirstOffset, p.LastOffset, f, fn, bad); err != nil {
			return err
		}
	}
	return nil
}

func scanPartition(ctx context.Context, brokers []string, dialer *kafka.Dialer, topic string, partition int, from, to int64, f Filter, fn func(*Letter) error, bad func(error)) error {
	r := kafka.NewReader(kafka.ReaderConfig{Brokers: brokers, Dialer: dialer, Topic: topic, Partition: partition, MaxBytes: 16 << 20, MaxWait: 200 * time.Millisecond})
	defer r.Close()
	if err := r.SetOffset(from); err != nil {
		return err
	}
	for {
		m, err := r.FetchMessage(ctx)
		if err != nil {
			return fmt.Errorf("reading %s partition %d: %w", topic, partition, err)
		}
		if l, err := Decode(m); err != nil {
			if bad != nil {
				bad(err)
			}
		} else if f.Match(l) {
			if err := fn(l); err != nil {
				return err
			}
		}
		if m.Offset >= to-1 {
			return nil
		}
	}
}

// ErrStop ends a Scan early without an error (a list limit reached).
var ErrStop = errors.New("stop")
