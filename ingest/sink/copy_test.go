package sink

import (
	"context"
	"math"
	"testing"
	"time"

	"takt.dev/schemas"
	"takt.dev/testkit"
)

// The binary COPY stream copySamples writes is what the table holds, field by field:
// every kind of value (number, text, none), every role, timestamps at the µs (below
// it truncated, as pgx does), at the contract's ends (1970, 9999) and before
// PostgreSQL's epoch, extreme numbers and seqs, text that is not ASCII.
func TestBinaryCopyMatchesTheTable(t *testing.T) {
	ctx := context.Background()
	pool := testkit.NewDatabase(t).Pool(t)
	ts := time.Date(2026, 11, 25, 8, 0, 0, 123456789, time.UTC)
	e := &schemas.Envelope{Version: 1, Tenant: "acme", Site: "s", Area: "a", Line: "l", Equipment: "filler-1", Agent: "gw-é", Samples: []schemas.Sample{
		{Seq: 1, Tag: "speed", Role: schemas.RoleMeasurement, TS: ts, Kind: schemas.NumberValue, Value: -12.5, Quality: schemas.QualityGood},
		{Seq: 2, Tag: "batch", Role: schemas.RoleMeasurement, TS: ts, Kind: schemas.TextValue, Text: "Lot ä-17 ✓", Quality: schemas.QualityUncertain},
		{Seq: 3, Tag: "temp", Role: schemas.RoleMeasurement, TS: ts, Kind: schemas.NoValue, Quality: schemas.QualityBad},
		{Seq: 4, Tag: "state", Role: schemas.RoleState, TS: time.Unix(0, 1000).UTC(), Kind: schemas.NumberValue, Value: 3, Quality: schemas.QualityGood, State: schemas.StateStoppedUnplanned},
		{Seq: 5, Tag: "count", Role: schemas.RoleCounter, TS: time.Date(9999, 12, 31, 23, 59, 59, 999999000, time.UTC), Kind: schemas.NumberValue, Value: math.MaxFloat64, Quality: schemas.QualityGood, Counter: schemas.CounterTotal},
		{Seq: math.MaxInt64, Tag: "tiny", Role: schemas.RoleMeasurement, TS: time.Date(1999, 12, 31, 23, 59, 59, 500, time.UTC), Kind: schemas.NumberValue, Value: math.SmallestNonzeroFloat64, Quality: schemas.QualityGood},
	}}
	tx, err := pool.Begin(ctx)
	if err != nil {
		t.Fatal(err)
	}
	n, err := copySamples(ctx, tx, []*schemas.Envelope{e, e}) // twice: rows of several envelopes in one stream
	if err != nil || n != 12 {
		t.Fatalf("copySamples = %d, %v", n, err)
	}
	if err := tx.Commit(ctx); err != nil {
		t.Fatal(err)
	}
	rows, err := pool.Query(ctx, `SELECT tenant_id, equipment, tag, ts, value, text_value, quality, role, agent, seq FROM samples ORDER BY seq`)
	if err != nil {
		t.Fatal(err)
	}
	defer rows.Close()
	i := 0
	for rows.Next() {
		var tenant, equipment, tag, agent string
		var at time.Time
		var value *float64
		var text *string
		var quality, role int16
		var seq int64
		if err := rows.Scan(&tenant, &equipment, &tag, &at, &value, &text, &quality, &role, &agent, &seq); err != nil {
			t.Fatal(err)
		}
		s := e.Samples[i/2] // each sample twice, in seq order
		wantTS := s.TS.Truncate(time.Microsecond)
		if tenant != e.Tenant || equipment != e.Equipment || agent != e.Agent || tag != s.Tag || !at.Equal(wantTS) ||
			quality != int16(s.Quality) || role != int16(s.Role) || uint64(seq) != s.Seq {
			t.Errorf("row %d: %s %s %s %v q%d r%d %s %d; want %+v", i, tenant, equipment, tag, at, quality, role, agent, seq, s)
		}
		switch s.Kind {
		case schemas.NumberValue:
			if value == nil || *value != s.Value || text != nil {
				t.Errorf("row %d: value %v text %v, want %v", i, value, text, s.Value)
			}
		case schemas.TextValue:
			if text == nil || *text != s.Text || value != nil {
				t.Errorf("row %d: text %v value %v, want %q", i, text, value, s.Text)
			}
		default:
			if text != nil || value != nil {
				t.Errorf("row %d: a sample without a value has value %v text %v", i, value, text)
			}
		}
		i++
	}
	if i != 12 {
		t.Fatalf("%d rows read back", i)
	}
}

// A COPY whose connection fails under it (here its backend is terminated, as a
// PostgreSQL restart or failover would) returns while pgx may still be reading the
// stream in a goroutine of its own: the next batch must not be encoded into that
// buffer. Under the race detector this failed (CI, in TestTwoBridgesWithBacklogReplay)
// while copySamples gave every buffer back to its pool.
func TestFailedCopyLeavesItsBufferAlone(t *testing.T) {
	ctx := context.Background()
	pool := testkit.NewDatabase(t).Pool(t)
	ts := time.Date(2026, 11, 25, 8, 0, 0, 0, time.UTC)
	big := &schemas.Envelope{Version: 1, Tenant: "acme", Equipment: "filler-1", Agent: "gw"}
	for i := range 200_000 {
		big.Samples = append(big.Samples, schemas.Sample{Seq: uint64(i + 1), Tag: "speed", Role: schemas.RoleMeasurement, TS: ts, Kind: schemas.NumberValue, Value: float64(i), Quality: schemas.QualityGood})
	}
	small := &schemas.Envelope{Version: 1, Tenant: "acme", Equipment: "filler-2", Agent: "gw", Samples: big.Samples[:10]}
	failed := 0
	for attempt := range 5 {
		tx, err := pool.Begin(ctx)
		if err != nil {
			t.Fatal(err)
		}
		var pid int
		if err := tx.QueryRow(ctx, `SELECT pg_backend_pid()`).Scan(&pid); err != nil {
			t.Fatal(err)
		}
		kill := time.AfterFunc(time.Duration(1+attempt*2)*time.Millisecond, func() {
			_, _ = pool.Exec(ctx, `SELECT pg_terminate_backend($1)`, pid)
		})
		_, err = copySamples(ctx, tx, []*schemas.Envelope{big})
		kill.Stop()
		_ = tx.Rollback(ctx)
		if err != nil {
			failed++
		}
		// At once, the next batch, as the sink's retry would.
		tx, err = pool.Begin(ctx)
		if err != nil {
			t.Fatal(err)
		}
		n, err := copySamples(ctx, tx, []*schemas.Envelope{small})
		_ = tx.Rollback(ctx)
		if err != nil || n != 10 {
			t.Fatalf("the batch after a failed COPY: %d rows, %v", n, err)
		}
	}
	if failed == 0 {
		t.Fatal("no COPY lost its connection: the test proved nothing")
	}
}
