package buffer

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"runtime"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus/testutil"
)

func open(t *testing.T, dir string, max, seg int64, p Policy) *Buffer {
	t.Helper()
	b, err := Open(Options{Dir: dir, MaxBytes: max, SegmentBytes: seg, Policy: p})
	if err != nil {
		t.Fatal(err)
	}
	return b
}

func rec(seq uint64, n int, size int) Record {
	return Record{Topic: "takt/v1/t/s/a/l/e", Payload: make([]byte, size), FirstSeq: seq, Samples: n}
}

func next(t *testing.T, b *Buffer) (Record, Pos) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
	defer cancel()
	r, p, err := b.Next(ctx)
	if err != nil {
		t.Fatalf("Next: %v", err)
	}
	return r, p
}

func TestAppendNextAckAndRecover(t *testing.T) {
	dir := t.TempDir()
	ctx := context.Background()
	b := open(t, dir, 1<<20, 1<<18, DropOldest)
	for i := range 10 {
		if err := b.Append(ctx, rec(uint64(i*10+1), 10, 1000+i)); err != nil {
			t.Fatal(err)
		}
	}
	var pos []Pos
	for i := range 10 {
		r, p := next(t, b)
		if r.FirstSeq != uint64(i*10+1) || len(r.Payload) != 1000+i || r.Topic != "takt/v1/t/s/a/l/e" {
			t.Fatalf("record %d came back as seq %d, %d bytes, topic %q", i, r.FirstSeq, len(r.Payload), r.Topic)
		}
		pos = append(pos, p)
	}
	// Out-of-order acknowledgements: 0, 1, 3 acked; 2 is not, so the head stays at 2.
	b.Ack(pos[0])
	b.Ack(pos[1])
	b.Ack(pos[3])
	if recs, samples, _ := b.Pending(); recs != 7 || samples != 70 {
		t.Fatalf("pending %d records %d samples, want 7 and 70", recs, samples)
	}
	b.Close()

	b = open(t, dir, 1<<20, 1<<18, DropOldest)
	defer b.Close()
	if got := b.LastSeq(); got != 100 {
		t.Fatalf("LastSeq after reopen = %d, want 100", got)
	}
	r, _ := next(t, b)
	if r.FirstSeq != 21 {
		t.Fatalf("after reopen the first record is seq %d, want 21 (the head)", r.FirstSeq)
	}
}

func TestTornTailIsCutOff(t *testing.T) {
	dir := t.TempDir()
	b := open(t, dir, 1<<20, 1<<18, DropOldest)
	for i := range 3 {
		b.Append(context.Background(), rec(uint64(i+1), 1, 100))
	}
	b.Close()
	seg := filepath.Join(dir, segName(0))
	f, _ := os.OpenFile(seg, os.O_WRONLY|os.O_APPEND, 0)
	f.Write([]byte{200, 0, 0, 0, 1, 2, 3}) // a record header cut short by a crash
	f.Close()
	b = open(t, dir, 1<<20, 1<<18, DropOldest)
	defer b.Close()
	if testutil.ToFloat64(b.m.corrupt) != 1 {
		t.Fatal("torn tail not counted")
	}
	for i := range 3 {
		if r, _ := next(t, b); r.FirstSeq != uint64(i+1) {
			t.Fatalf("record %d: seq %d", i, r.FirstSeq)
		}
	}
	if err := b.Append(context.Background(), rec(4, 1, 100)); err != nil {
		t.Fatal(err)
	}
	if r, _ := next(t, b); r.FirstSeq != 4 {
		t.Fatalf("append after the cut: seq %d", r.FirstSeq)
	}
}

func TestDropOldestWhenFull(t *testing.T) {
	dir := t.TempDir()
	const seg = 64 << 10
	b := open(t, dir, 4*seg, seg, DropOldest)
	defer b.Close()
	// 10 KiB records: 6 per segment; 100 of them is far beyond 4 segments.
	for i := range 100 {
		if err := b.Append(context.Background(), rec(uint64(i*5+1), 5, 10<<10)); err != nil {
			t.Fatal(err)
		}
	}
	recs, samples, bytes := b.Pending()
	if bytes > 4*seg {
		t.Fatalf("buffer holds %d bytes, bound %d", bytes, 4*seg)
	}
	dropped := int(testutil.ToFloat64(b.m.droppedSamples))
	if dropped == 0 || dropped+samples != 500 || int(testutil.ToFloat64(b.m.droppedRecords))+recs != 100 {
		t.Fatalf("dropped %d + pending %d samples, want 500 in all", dropped, samples)
	}
	r, _ := next(t, b)
	if want := uint64(dropped + 1); r.FirstSeq != want {
		t.Fatalf("after dropping %d samples the oldest record is seq %d, want %d", dropped, r.FirstSeq, want)
	}
}

func TestPauseWhenFull(t *testing.T) {
	dir := t.TempDir()
	const seg = 64 << 10
	b := open(t, dir, 2*seg, seg, Pause)
	defer b.Close()
	ctx := context.Background()
	n := 0
	for ; ; n++ {
		short, cancel := context.WithTimeout(ctx, 100*time.Millisecond)
		err := b.Append(short, rec(uint64(n+1), 1, 10<<10))
		cancel()
		if err != nil {
			break
		}
	}
	if n < 10 || testutil.ToFloat64(b.m.droppedSamples) != 0 {
		t.Fatalf("paused after %d appends with %v dropped", n, testutil.ToFloat64(b.m.droppedSamples))
	}
	done := make(chan error, 1)
	go func() { done <- b.Append(ctx, rec(uint64(n+1), 1, 10<<10)) }()
	select {
	case err := <-done:
		t.Fatalf("append into a full buffer returned %v without waiting", err)
	case <-time.After(100 * time.Millisecond):
	}
	for range n { // the broker acknowledges everything
		_, p := next(t, b)
		b.Ack(p)
	}
	if err := <-done; err != nil {
		t.Fatalf("append after space was freed: %v", err)
	}
}

func TestRewindResendsUnacknowledged(t *testing.T) {
	b := open(t, t.TempDir(), 1<<20, 1<<18, DropOldest)
	defer b.Close()
	for i := range 5 {
		b.Append(context.Background(), rec(uint64(i+1), 1, 10))
	}
	_, p0 := next(t, b)
	next(t, b)
	next(t, b)
	b.Ack(p0)
	b.Rewind(false)
	var got []uint64
	for range 4 {
		r, _ := next(t, b)
		got = append(got, r.FirstSeq)
	}
	if fmt.Sprint(got) != "[2 3 4 5]" {
		t.Fatalf("after rewind: %v, want [2 3 4 5]", got)
	}
}

// Acknowledged records stay for the replay window, across segments, and a replay
// rewind hands them out again from the oldest acknowledged within the window; past
// the window their segments are deleted; a full buffer gives them up before any
// unsent record, under either policy.
func TestReplayWindow(t *testing.T) {
	now := time.Date(2026, 12, 1, 8, 0, 0, 0, time.UTC)
	clock := func() time.Time { return now }
	dir := t.TempDir()
	reg := NewMetrics(nil)
	b, err := Open(Options{Dir: dir, MaxBytes: 8 << 16, SegmentBytes: 1 << 16, Policy: Pause, ReplayWindow: time.Minute, Now: clock, Metrics: reg})
	if err != nil {
		t.Fatal(err)
	}
	defer b.Close()
	ctx := context.Background()
	// 20 records of 10 KB: 6 per segment, so 4 segments.
	for i := range 20 {
		if err := b.Append(ctx, rec(uint64(i+1), 1, 10_000)); err != nil {
			t.Fatal(err)
		}
	}
	var pos []Pos
	for range 20 {
		_, p := next(t, b)
		pos = append(pos, p)
	}
	for i := range 15 { // 0..9 at 8:00, 10..14 at 8:00:40
		if i == 10 {
			now = now.Add(40 * time.Second)
		}
		if !b.Ack(pos[i]) {
			t.Fatalf("first Ack of record %d reported not new", i)
		}
	}
	if b.Ack(pos[3]) {
		t.Fatal("a second Ack of record 3 reported new")
	}
	seqs := func(n int) string {
		var got []uint64
		for range n {
			r, _ := next(t, b)
			got = append(got, r.FirstSeq)
		}
		return fmt.Sprint(got)
	}
	b.Rewind(false)
	if got := seqs(5); got != "[16 17 18 19 20]" {
		t.Fatalf("plain rewind hands out %s, want the unacknowledged 16..20", got)
	}
	b.Rewind(true)
	if got := seqs(20); got != "[1 2 3 4 5 6 7 8 9 10 11 12 13 14 15 16 17 18 19 20]" {
		t.Fatalf("replay rewind hands out %s, want 1..20", got)
	}
	// 8:01:30: records 0..9 left the window, 10..14 are in it.
	now = now.Add(50 * time.Second)
	b.Rewind(true)
	if got := seqs(10); got != "[11 12 13 14 15 16 17 18 19 20]" {
		t.Fatalf("replay rewind at 8:01:30 hands out %s, want 11..20", got)
	}
	if files, _ := filepath.Glob(filepath.Join(dir, "*.seg")); len(files) != 3 {
		t.Fatalf("%d segment files after the window passed over the first; want 3", len(files))
	}
	// Fill the buffer: the replay segments go first, unsent data waits (pause).
	for i := 20; i < 59; i++ { // 53 records of 10 KB do not fit 512 KiB with segment 1
		actx, cancel := context.WithTimeout(ctx, 2*time.Second)
		err := b.Append(actx, rec(uint64(i+1), 1, 10_000))
		cancel()
		if err != nil {
			t.Fatalf("append %d with only replay data to give up: %v", i, err)
		}
	}
	if got := testutil.ToFloat64(reg.replayEvicted); got < 1 {
		t.Fatalf("takt_agent_buffer_replay_evicted_segments_total = %v, want at least 1", got)
	}
	if recs, _, _ := b.Pending(); recs != 44 {
		t.Fatalf("%d records pending, want 44 (16..59): nothing unsent given up", recs)
	}
	actx, cancel := context.WithTimeout(ctx, 200*time.Millisecond)
	defer cancel()
	if err := b.Append(actx, rec(100, 1, 60_000)); err == nil {
		t.Fatal("an append into a buffer full of unsent data did not wait (pause)")
	}
}

// BenchmarkAppend and BenchmarkReplay measure the buffer with 500-sample envelopes
// of 25 KB, about what the agent writes.
func BenchmarkAppend(b *testing.B) {
	buf, err := Open(Options{Dir: b.TempDir(), MaxBytes: 1 << 30, SegmentBytes: 8 << 20, Policy: DropOldest})
	if err != nil {
		b.Fatal(err)
	}
	defer buf.Close()
	r := rec(1, 500, 25_000)
	for b.Loop() {
		if err := buf.Append(context.Background(), r); err != nil {
			b.Fatal(err)
		}
		r.FirstSeq += 500
	}
	b.ReportMetric(float64(b.N)*500/b.Elapsed().Seconds(), "agent_buffer_append_samples_per_s=samples/s")
}

func BenchmarkReplay(b *testing.B) {
	dir := b.TempDir()
	buf, err := Open(Options{Dir: dir, MaxBytes: 1 << 30, SegmentBytes: 8 << 20, Policy: DropOldest})
	if err != nil {
		b.Fatal(err)
	}
	const n = 4000 // 2,000,000 samples, 100 MB
	for i := range n {
		buf.Append(context.Background(), rec(uint64(i*500+1), 500, 25_000))
	}
	buf.Close()
	b.ResetTimer()
	samples := 0
	for b.Loop() {
		buf, err := Open(Options{Dir: dir, MaxBytes: 1 << 30, SegmentBytes: 8 << 20, Policy: DropOldest})
		if err != nil {
			b.Fatal(err)
		}
		for range n {
			r, _, err := buf.Next(context.Background())
			if err != nil {
				b.Fatal(err)
			}
			samples += r.Samples
		}
		buf.Close()
	}
	b.ReportMetric(float64(samples)/b.Elapsed().Seconds(), "agent_buffer_replay_samples_per_s=samples/s")
}

// A corrupt length on disk (a bit flip, a power loss mid-write) claiming a 4 GiB
// record is checked against the file before anything is allocated: the segment is
// cut there and counted, the records before it are kept, and the agent starts.
func TestCorruptLengthAllocatesNothing(t *testing.T) {
	dir := t.TempDir()
	b := open(t, dir, 1<<20, 1<<18, DropOldest)
	for i := range 3 {
		b.Append(context.Background(), rec(uint64(i+1), 1, 100))
	}
	b.Close()
	seg := filepath.Join(dir, segName(0))
	f, _ := os.OpenFile(seg, os.O_WRONLY|os.O_APPEND, 0)
	f.Write([]byte{0xff, 0xff, 0xff, 0xfe, 0, 0, 0, 0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14}) // length 4 GiB - 257
	f.Close()
	var before, after runtimeMem
	before.read()
	b = open(t, dir, 1<<20, 1<<18, DropOldest)
	after.read()
	defer b.Close()
	if grew := after.total - before.total; grew > 64<<20 {
		t.Fatalf("opening the buffer allocated %d MiB", grew>>20)
	}
	if testutil.ToFloat64(b.m.corrupt) != 1 {
		t.Fatal("corrupt record not counted")
	}
	for i := range 3 {
		if r, _ := next(t, b); r.FirstSeq != uint64(i+1) {
			t.Fatalf("record %d: seq %d", i, r.FirstSeq)
		}
	}
}

type runtimeMem struct{ total uint64 }

func (m *runtimeMem) read() {
	var s runtime.MemStats
	runtime.ReadMemStats(&s)
	m.total = s.TotalAlloc
}
