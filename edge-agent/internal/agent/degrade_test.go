package agent

import (
	"context"
	"math"
	"strings"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"

	"takt.dev/edge-agent/internal/buffer"
	"takt.dev/edge-agent/internal/config"
	"takt.dev/schemas"
)

// A value the contract cannot carry costs that sample its value, never the batch:
// it goes out as a bad-quality sample with the reason in a metric, and the state and
// counter beside it go out whole.
func TestOneBadValueDegradesOneSample(t *testing.T) {
	buf, err := buffer.Open(buffer.Options{Dir: t.TempDir(), MaxBytes: 1 << 20, SegmentBytes: 256 << 10})
	if err != nil {
		t.Fatal(err)
	}
	defer buf.Close()
	cfg := &config.Config{Agent: config.Agent{ID: "gw", Tenant: "acme"}, Publish: config.Publish{BatchSize: 100, Linger: time.Hour},
		Equipment: []config.Equipment{{Site: "s", Area: "a", Line: "l", Code: "eq"}}}
	now := time.Date(2026, 11, 25, 8, 0, 0, 0, time.UTC)
	b := newBatcher(cfg, buf, func() time.Time { return now }, prometheus.NewRegistry())
	num := func(tag string, v float64) schemas.Sample {
		return schemas.Sample{Tag: tag, Role: schemas.RoleMeasurement, TS: now, Kind: schemas.NumberValue, Value: v, Quality: schemas.QualityGood}
	}
	text := func(tag, v string) schemas.Sample {
		return schemas.Sample{Tag: tag, Role: schemas.RoleMeasurement, TS: now, Kind: schemas.TextValue, Text: v, Quality: schemas.QualityGood}
	}
	late := num("late", 1)
	late.TS = time.Date(10000, 1, 1, 0, 0, 0, 0, time.UTC)
	in := []schemas.Sample{
		{Tag: "state", Role: schemas.RoleState, TS: now, Kind: schemas.NumberValue, Value: 1, State: schemas.StateRunning, Quality: schemas.QualityGood},
		num("nan", math.NaN()), num("inf", math.Inf(1)), text("long", strings.Repeat("x", 5000)), text("utf8", "bad \xff byte"), late,
		{Tag: "count", Role: schemas.RoleCounter, Counter: schemas.CounterTotal, TS: now, Kind: schemas.NumberValue, Value: 42, Quality: schemas.QualityGood},
	}
	ctx := context.Background()
	b.add(ctx, 0, in)
	b.flushAll(ctx)
	rec, _, err := buf.Next(ctx)
	if err != nil {
		t.Fatal(err)
	}
	env, err := schemas.Decode(rec.Payload)
	if err != nil {
		t.Fatalf("the buffered envelope does not decode: %v", err)
	}
	if len(env.Samples) != len(in) {
		t.Fatalf("%d samples buffered, want %d", len(env.Samples), len(in))
	}
	for i, s := range env.Samples {
		bad := i >= 1 && i <= 5
		if bad != (s.Quality == schemas.QualityBad) || s.Tag != in[i].Tag {
			t.Errorf("sample %d (%s): quality %s", i, s.Tag, s.Quality)
		}
	}
	if env.Samples[0].State != schemas.StateRunning || env.Samples[6].Value != 42 {
		t.Fatalf("the state and the counter beside the bad values: %+v %+v", env.Samples[0], env.Samples[6])
	}
	for field, want := range map[string]float64{"value": 2, "text": 2, "ts": 1} {
		if got := testutil.ToFloat64(b.degraded.WithLabelValues(field)); got != want {
			t.Errorf("takt_agent_degraded_samples_total{field=%q} = %v, want %v", field, got, want)
		}
	}
}

// A batch larger than a buffer segment (long texts) goes out as several envelopes
// that fit, every sample once, seq contiguous: no deterministic append failure.
func TestBatchLargerThanASegmentIsSplit(t *testing.T) {
	buf, err := buffer.Open(buffer.Options{Dir: t.TempDir(), MaxBytes: 1 << 20, SegmentBytes: 64 << 10})
	if err != nil {
		t.Fatal(err)
	}
	defer buf.Close()
	cfg := &config.Config{Agent: config.Agent{ID: "gw", Tenant: "acme"}, Publish: config.Publish{BatchSize: 1000, Linger: time.Hour},
		Equipment: []config.Equipment{{Site: "s", Area: "a", Line: "l", Code: "eq"}}}
	now := time.Date(2026, 11, 25, 8, 0, 0, 0, time.UTC)
	b := newBatcher(cfg, buf, func() time.Time { return now }, prometheus.NewRegistry())
	var in []schemas.Sample
	for range 50 { // 50 texts of 4000 bytes: about 205 kB, three segments' worth
		in = append(in, schemas.Sample{Tag: "lot", Role: schemas.RoleMeasurement, TS: now, Kind: schemas.TextValue, Text: strings.Repeat("x", 4000), Quality: schemas.QualityGood})
	}
	ctx := context.Background()
	b.add(ctx, 0, in)
	b.flushAll(ctx)
	next := uint64(1)
	envelopes := 0
	for next <= 50 {
		rctx, cancel := context.WithTimeout(ctx, time.Second)
		rec, _, err := buf.Next(rctx)
		cancel()
		if err != nil {
			t.Fatalf("after %d envelopes, seq %d: %v", envelopes, next, err)
		}
		env, err := schemas.Decode(rec.Payload)
		if err != nil {
			t.Fatal(err)
		}
		for _, s := range env.Samples {
			if s.Seq != next {
				t.Fatalf("seq %d, want %d", s.Seq, next)
			}
			next++
		}
		envelopes++
	}
	if envelopes < 4 || len(b.pending[0].samples) != 0 {
		t.Fatalf("%d envelopes, %d samples left pending; want the batch split into at least 4, nothing left", envelopes, len(b.pending[0].samples))
	}
}
