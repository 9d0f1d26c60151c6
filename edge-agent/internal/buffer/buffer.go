// Package buffer is the agent's disk buffer: every envelope is appended to it before
// it is published, and removed only when the broker acknowledged it.
//
// Contract:
//   - Append returns once the record is written to the segment file: a process that
//     is killed afterwards (SIGKILL included) finds it again on restart. Power loss
//     is covered for what was written before the last fsync (Options.SyncEvery).
//   - Next hands out records in append order; Ack may come in any order; the head
//     (the oldest record not acknowledged) advances over acknowledged records and is
//     saved, so after a restart only records from the head on are sent again.
//     Records after the head that were acknowledged before a crash are sent twice;
//     downstream deduplicates.
//   - The buffer never holds more than MaxBytes. When an append would pass it, the
//     policy applies: DropOldest deletes the oldest segment (counting its records and
//     samples as dropped), Pause blocks Append until acknowledgements free space.
//   - LastSeq is the highest sample seq ever appended, recovered from the files, so
//     an agent's seq continues across restarts.
//   - Acknowledged is not always delivered: a broker that crashes (rather than
//     stops) loses what it acknowledged since its last save. So acknowledged records
//     stay on disk for Options.ReplayWindow after their acknowledgement, and
//     Rewind(true) hands them out again, from the oldest record acknowledged within
//     the window (downstream drops what it already has). They are the first thing
//     given up when the buffer is full, before any unsent data.
//   - Durability: a record is in the file when Append returns; the tail segment is
//     fsynced at most every Options.SyncEvery, on rotation and on Close; the head is
//     written on every move and fsynced with the tail. After power loss, records
//     appended since the last fsync may be lost (the torn end is cut off), and a stale
//     head only makes records be sent again.
package buffer

import (
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"hash/crc32"
	"io"
	"log/slog"
	"math"
	"os"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
	"sync"
	"time"
)

// Policy says what Append does when the buffer is full.
type Policy int

const (
	DropOldest Policy = iota
	Pause
)

// ParsePolicy reads "drop_oldest" or "pause".
func ParsePolicy(s string) (Policy, error) {
	switch s {
	case "drop_oldest":
		return DropOldest, nil
	case "pause":
		return Pause, nil
	}
	return 0, fmt.Errorf("buffer policy %q: want drop_oldest or pause", s)
}

// Options configure a buffer.
type Options struct {
	Dir          string
	MaxBytes     int64
	SegmentBytes int64
	Policy       Policy
	SyncEvery    time.Duration // fsync the tail segment at most this often; 0: on rotation and Close only
	ReplayWindow time.Duration // keep acknowledged records this long for Rewind(true); 0: delete at once
	Now          func() time.Time
	Log          *slog.Logger
	Metrics      *Metrics
}

// Record is one stored envelope.
type Record struct {
	Topic    string
	Payload  []byte
	FirstSeq uint64
	Samples  int
}

// Pos identifies a record handed out by Next, for Ack.
type Pos struct {
	seg uint64
	idx int
}

type recMeta struct {
	off      int64
	size     int64 // whole record, header included
	firstSeq uint64
	samples  int
}

type segment struct {
	id    uint64
	file  *os.File
	size  int64
	recs  []recMeta
	acked []int64 // when each record was acknowledged (Unix ns); 0: not yet
}

// lastAck is when the segment's last acknowledgement came, if all records have one.
func (s *segment) lastAck() (int64, bool) {
	var last int64
	for _, a := range s.acked {
		if a == 0 {
			return 0, false
		}
		last = max(last, a)
	}
	return last, true
}

// Lost names samples of a torn record cut off at start-up.
type Lost struct {
	FirstSeq uint64
	Samples  int
}

// Buffer is a bounded, persistent FIFO of records.
type Buffer struct {
	// Torn lists, after Open, the samples of torn records that were cut off, as far
	// as their headers tell.
	Torn []Lost

	opt Options
	log *slog.Logger
	m   *Metrics

	mu       sync.Mutex
	changed  chan struct{} // closed and replaced on every append, ack, rewind and close
	segs     []*segment    // oldest first; the last one is the tail being written
	head     Pos           // first unacknowledged record; segments before it are kept for replay
	cursor   Pos           // next record Next hands out
	bytes    int64
	lastSeq  uint64
	headFile *os.File
	lastSync time.Time
	closed   bool
	// limbo holds the samples of records dropped while handed out and not yet
	// acknowledged: an Ack still counts them delivered; a Rewind or Close counts them
	// dropped.
	limbo map[Pos]int
}

const headerLen = 4 + 4 + 8 + 4 + 2 // length, crc, first seq, samples, topic length

var crcTable = crc32.MakeTable(crc32.Castagnoli)

// ErrClosed is returned by Append and Next after Close.
var ErrClosed = errors.New("buffer closed")

// ErrTooLarge is returned by Append for a record larger than a segment: no retry
// helps, the record must be split.
var ErrTooLarge = errors.New("record larger than a segment")

// Overhead is what a record takes in a segment besides its topic and payload.
const Overhead = headerLen

// Open opens (or creates) the buffer in opt.Dir and recovers its state: torn records
// at the end of the last segment are cut off.
func Open(opt Options) (*Buffer, error) {
	if opt.SegmentBytes <= 0 || opt.MaxBytes < 2*opt.SegmentBytes {
		return nil, fmt.Errorf("buffer: max bytes %d must hold at least two segments of %d", opt.MaxBytes, opt.SegmentBytes)
	}
	if opt.Log == nil {
		opt.Log = slog.New(slog.DiscardHandler)
	}
	if opt.Metrics == nil {
		opt.Metrics = NewMetrics(nil)
	}
	if opt.Now == nil {
		opt.Now = time.Now
	}
	if err := os.MkdirAll(opt.Dir, 0o750); err != nil {
		return nil, fmt.Errorf("buffer dir %q: %w", opt.Dir, err)
	}
	b := &Buffer{opt: opt, log: opt.Log, m: opt.Metrics, changed: make(chan struct{}), limbo: map[Pos]int{}}
	if err := b.recover(); err != nil {
		b.closeFiles()
		return nil, err
	}
	b.publishGauges()
	return b, nil
}

func segName(id uint64) string { return fmt.Sprintf("%020d.seg", id) }

func (b *Buffer) recover() error {
	names, err := filepath.Glob(filepath.Join(b.opt.Dir, "*.seg"))
	if err != nil {
		return err
	}
	var ids []uint64
	for _, n := range names {
		id, err := strconv.ParseUint(strings.TrimSuffix(filepath.Base(n), ".seg"), 10, 64)
		if err == nil {
			ids = append(ids, id)
		}
	}
	sort.Slice(ids, func(i, j int) bool { return ids[i] < ids[j] })

	headSeg, headIdx, lastSeq := b.readHead()
	if lastSeq > math.MaxInt64 || (len(ids) > 0 && headSeg > ids[len(ids)-1]+1) {
		// A head that does not fit the segments (a disk gone bad in a way its CRC did
		// not catch): ignored, so nothing is deleted on its word; every record is
		// sent again and downstream drops what it has.
		b.log.Warn("buffer: the head file does not fit the segments; ignored", "head_segment", headSeg, "last_seq", lastSeq, "segments", len(ids))
		b.m.corrupt.Inc()
		headSeg, headIdx, lastSeq = 0, 0, 0
	}
	b.lastSeq = lastSeq
	for i, id := range ids {
		if id < headSeg {
			// Fully acknowledged before the crash: deleted, but its seqs are never
			// handed out again, whatever the head says.
			if old, err := b.scan(id, false); err == nil {
				if n := len(old.recs); n > 0 {
					b.lastSeq = max(b.lastSeq, old.recs[n-1].firstSeq+uint64(old.recs[n-1].samples)-1)
				}
				old.file.Close()
			}
			os.Remove(filepath.Join(b.opt.Dir, segName(id)))
			continue
		}
		s, err := b.scan(id, i == len(ids)-1)
		if err != nil {
			return err
		}
		b.segs = append(b.segs, s)
	}
	if len(b.segs) == 0 {
		next := headSeg
		if len(ids) > 0 && ids[len(ids)-1] >= next {
			next = ids[len(ids)-1] + 1
		}
		s, err := b.create(next)
		if err != nil {
			return err
		}
		b.segs = []*segment{s}
	}
	b.head = Pos{seg: b.segs[0].id}
	if b.segs[0].id == headSeg {
		b.head.idx = min(headIdx, len(b.segs[0].recs))
		for i := range b.head.idx {
			b.segs[0].acked[i] = 1 // acknowledged before the restart, long ago
		}
	}
	for _, s := range b.segs {
		b.bytes += s.size
		if n := len(s.recs); n > 0 {
			r := s.recs[n-1]
			b.lastSeq = max(b.lastSeq, r.firstSeq+uint64(r.samples)-1)
		}
	}
	b.cursor = b.head
	hf, err := os.OpenFile(filepath.Join(b.opt.Dir, "head"), os.O_CREATE|os.O_RDWR, 0o640)
	if err != nil {
		return err
	}
	b.headFile = hf
	return nil
}

// scan reads a segment's records; in the last segment a torn record is cut off.
func (b *Buffer) scan(id uint64, last bool) (*segment, error) {
	f, err := os.OpenFile(filepath.Join(b.opt.Dir, segName(id)), os.O_RDWR, 0o640)
	if err != nil {
		return nil, err
	}
	s := &segment{id: id, file: f}
	st, err := f.Stat()
	if err != nil {
		return nil, err
	}
	hdr := make([]byte, headerLen)
	var off int64
	var lost Lost // what the first bad record's header says it held, if it says
	for {
		if _, err := f.ReadAt(hdr, off); err != nil {
			break // end of file, or a partial header
		}
		lost = Lost{FirstSeq: binary.LittleEndian.Uint64(hdr[8:]), Samples: int(binary.LittleEndian.Uint32(hdr[16:]))}
		// The length on disk is checked against the file before anything is
		// allocated for it: a corrupt length must not ask for gigabytes.
		n := int64(binary.LittleEndian.Uint32(hdr[0:]))
		if n < headerLen-8 || off+8+n > st.Size() {
			break
		}
		body := make([]byte, n)
		if _, err := f.ReadAt(body, off+8); err != nil || crc32.Checksum(body, crcTable) != binary.LittleEndian.Uint32(hdr[4:]) {
			break
		}
		s.recs = append(s.recs, recMeta{off: off, size: 8 + n,
			firstSeq: binary.LittleEndian.Uint64(body[0:]), samples: int(binary.LittleEndian.Uint32(body[8:]))})
		off += 8 + n
	}
	if st.Size() != off {
		// The header of the record cut off names its samples, unless it is itself
		// damaged: believed only when it follows on from the record before it.
		plausible := lost.Samples > 0 && lost.Samples <= 1_000_000 && lost.FirstSeq > 0
		if n := len(s.recs); n > 0 {
			plausible = plausible && lost.FirstSeq == s.recs[n-1].firstSeq+uint64(s.recs[n-1].samples)
		}
		if plausible && off+headerLen <= st.Size() {
			b.m.tornSamples.Add(float64(lost.Samples))
			b.Torn = append(b.Torn, lost)
			b.log.Warn("buffer: a torn record lost samples (power loss before fsync?)", "segment", segName(id),
				"first_seq", lost.FirstSeq, "samples", lost.Samples)
		}
		b.log.Warn("buffer: cutting off a torn or corrupt end of a segment", "segment", segName(id), "at", off, "size", st.Size(), "last", last)
		b.m.corrupt.Inc()
		if err := f.Truncate(off); err != nil {
			return nil, err
		}
	}
	s.size = off
	s.acked = make([]int64, len(s.recs))
	return s, nil
}

func (b *Buffer) create(id uint64) (*segment, error) {
	f, err := os.OpenFile(filepath.Join(b.opt.Dir, segName(id)), os.O_CREATE|os.O_RDWR|os.O_TRUNC, 0o640)
	if err != nil {
		return nil, err
	}
	return &segment{id: id, file: f}, nil
}

// head file: segment id, record index, last seq, crc.
func (b *Buffer) readHead() (seg uint64, idx int, lastSeq uint64) {
	data, err := os.ReadFile(filepath.Join(b.opt.Dir, "head"))
	if err != nil || len(data) != 28 || crc32.Checksum(data[:24], crcTable) != binary.LittleEndian.Uint32(data[24:]) {
		return 0, 0, 0
	}
	return binary.LittleEndian.Uint64(data), int(binary.LittleEndian.Uint64(data[8:])), binary.LittleEndian.Uint64(data[16:])
}

func (b *Buffer) writeHead() {
	var data [28]byte
	binary.LittleEndian.PutUint64(data[0:], b.head.seg)
	binary.LittleEndian.PutUint64(data[8:], uint64(b.head.idx))
	binary.LittleEndian.PutUint64(data[16:], b.lastSeq)
	binary.LittleEndian.PutUint32(data[24:], crc32.Checksum(data[:24], crcTable))
	if _, err := b.headFile.WriteAt(data[:], 0); err != nil {
		b.log.Error("buffer: saving the head failed; records may be sent again after a restart", "err", err)
	}
}

// MaxRecord is the largest record Append takes, header included: a segment.
func (b *Buffer) MaxRecord() int64 { return b.opt.SegmentBytes }

// LastSeq is the highest seq appended so far (0 for a new buffer).
func (b *Buffer) LastSeq() uint64 {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.lastSeq
}

func (b *Buffer) notify() {
	close(b.changed)
	b.changed = make(chan struct{})
}

// Append stores one record. Under Pause it waits while the buffer is full, until ctx
// ends; under DropOldest it drops the oldest segment to make room.
func (b *Buffer) Append(ctx context.Context, r Record) error {
	body := make([]byte, 0, headerLen-8+len(r.Topic)+len(r.Payload))
	body = binary.LittleEndian.AppendUint64(body, r.FirstSeq)
	body = binary.LittleEndian.AppendUint32(body, uint32(r.Samples))
	body = binary.LittleEndian.AppendUint16(body, uint16(len(r.Topic)))
	body = append(body, r.Topic...)
	body = append(body, r.Payload...)
	rec := make([]byte, 8, 8+len(body))
	binary.LittleEndian.PutUint32(rec[0:], uint32(len(body)))
	binary.LittleEndian.PutUint32(rec[4:], crc32.Checksum(body, crcTable))
	rec = append(rec, body...)
	size := int64(len(rec))
	if size > b.opt.SegmentBytes {
		return fmt.Errorf("buffer: record of %d bytes: %w (%d)", size, ErrTooLarge, b.opt.SegmentBytes)
	}

	b.mu.Lock()
	defer b.mu.Unlock()
	for b.bytes+size > b.opt.MaxBytes && !b.closed {
		if b.segs[0].id < b.head.seg { // kept only for replay: the first thing to go
			b.m.replayEvicted.Inc()
			b.removeSegment()
			continue
		}
		if b.opt.Policy == DropOldest && len(b.segs) > 1 {
			b.dropOldest()
			continue
		}
		if b.opt.Policy == DropOldest { // one segment cannot be dropped: rotate first
			if err := b.rotate(); err != nil {
				return err
			}
			continue
		}
		b.m.fullWaits.Inc()
		ch := b.changed
		b.mu.Unlock()
		select {
		case <-ch:
		case <-ctx.Done():
			b.mu.Lock()
			return ctx.Err()
		}
		b.mu.Lock()
	}
	if b.closed {
		return ErrClosed
	}
	tail := b.segs[len(b.segs)-1]
	if tail.size+size > b.opt.SegmentBytes {
		if err := b.rotate(); err != nil {
			return err
		}
		tail = b.segs[len(b.segs)-1]
	}
	for {
		_, err := tail.file.WriteAt(rec, tail.size)
		if err == nil {
			break
		}
		_ = tail.file.Truncate(tail.size) // no torn record left behind
		if b.segs[0].id < b.head.seg {
			// The disk is full (or failing) before the buffer is: the replay
			// window's acknowledged envelopes go first, then try again.
			b.m.replayEvicted.Inc()
			b.removeSegment()
			continue
		}
		return fmt.Errorf("buffer: write %s: %w", segName(tail.id), err)
	}
	tail.recs = append(tail.recs, recMeta{off: tail.size, size: size, firstSeq: r.FirstSeq, samples: r.Samples})
	tail.acked = append(tail.acked, 0)
	tail.size += size
	b.bytes += size
	if last := r.FirstSeq + uint64(r.Samples) - 1; r.Samples > 0 && last > b.lastSeq {
		b.lastSeq = last
	}
	if b.opt.SyncEvery > 0 && time.Since(b.lastSync) >= b.opt.SyncEvery {
		tail.file.Sync()
		b.headFile.Sync()
		b.lastSync = time.Now()
	}
	b.m.appended.Add(float64(r.Samples))
	b.publishGauges()
	b.notify()
	return nil
}

func (b *Buffer) rotate() error {
	tail := b.segs[len(b.segs)-1]
	if err := tail.file.Sync(); err != nil {
		return err
	}
	s, err := b.create(tail.id + 1)
	if err != nil {
		return err
	}
	b.segs = append(b.segs, s)
	return nil
}

// dropOldest deletes the oldest segment, acknowledged or not. Its records not yet
// handed out are counted dropped now; those handed out wait in limbo for their Ack.
func (b *Buffer) dropOldest() {
	s := b.segs[0]
	records, samples := 0, 0
	for i := range s.recs {
		if s.acked[i] != 0 {
			continue
		}
		if s.id < b.cursor.seg || (s.id == b.cursor.seg && i < b.cursor.idx) {
			b.limbo[Pos{seg: s.id, idx: i}] = s.recs[i].samples
			continue
		}
		records++
		samples += s.recs[i].samples
	}
	b.countDropped(records, samples)
	b.log.Warn("buffer full: dropped the oldest segment", "segment", segName(s.id), "records", records, "samples", samples, "in_flight", len(b.limbo), "max_bytes", b.opt.MaxBytes)
	b.removeSegment()
	b.writeHead()
}

func (b *Buffer) countDropped(records, samples int) {
	b.m.droppedRecords.Add(float64(records))
	b.m.droppedSamples.Add(float64(samples))
}

// dropLimbo counts the records in limbo as dropped.
func (b *Buffer) dropLimbo() {
	samples := 0
	for _, n := range b.limbo {
		samples += n
	}
	b.countDropped(len(b.limbo), samples)
	clear(b.limbo)
}

// removeSegment deletes segs[0]; the head and the cursor move past it if they were
// in it.
func (b *Buffer) removeSegment() {
	s := b.segs[0]
	s.file.Close()
	os.Remove(filepath.Join(b.opt.Dir, segName(s.id)))
	b.bytes -= s.size
	b.segs = b.segs[1:]
	if b.head.seg < b.segs[0].id {
		b.head = Pos{seg: b.segs[0].id}
	}
	if b.cursor.seg < b.segs[0].id {
		b.cursor = Pos{seg: b.segs[0].id}
	}
}

// expire deletes the segments before the head whose every acknowledgement is older
// than the replay window.
func (b *Buffer) expire() {
	cutoff := b.opt.Now().Add(-b.opt.ReplayWindow).UnixNano()
	for len(b.segs) > 1 && b.segs[0].id < b.head.seg {
		if last, _ := b.segs[0].lastAck(); b.opt.ReplayWindow > 0 && last >= cutoff {
			return
		}
		b.removeSegment()
	}
}

func (b *Buffer) seg(id uint64) *segment {
	if len(b.segs) == 0 || id < b.segs[0].id {
		return nil
	}
	if k := int(id - b.segs[0].id); k < len(b.segs) {
		return b.segs[k]
	}
	return nil
}

// Next waits for the record at the cursor, hands it out and moves the cursor on.
func (b *Buffer) Next(ctx context.Context) (Record, Pos, error) {
	b.mu.Lock()
	for {
		if b.closed {
			b.mu.Unlock()
			return Record{}, Pos{}, ErrClosed
		}
		s := b.seg(b.cursor.seg)
		if s != nil && b.cursor.idx < len(s.recs) {
			break
		}
		if s != nil && s != b.segs[len(b.segs)-1] { // past the end of a full segment
			b.cursor = Pos{seg: b.cursor.seg + 1}
			continue
		}
		ch := b.changed
		b.mu.Unlock()
		select {
		case <-ch:
		case <-ctx.Done():
			return Record{}, Pos{}, ctx.Err()
		}
		b.mu.Lock()
	}
	pos := b.cursor
	s := b.seg(pos.seg)
	meta := s.recs[pos.idx]
	b.cursor.idx++
	file := s.file
	b.mu.Unlock()

	buf := make([]byte, meta.size)
	if _, err := file.ReadAt(buf, meta.off); err != nil && !errors.Is(err, io.EOF) {
		return Record{}, pos, fmt.Errorf("buffer: read %s: %w", segName(pos.seg), err)
	}
	body := buf[8:]
	tl := int(binary.LittleEndian.Uint16(body[12:]))
	return Record{
		FirstSeq: binary.LittleEndian.Uint64(body[0:]),
		Samples:  int(binary.LittleEndian.Uint32(body[8:])),
		Topic:    string(body[14 : 14+tl]),
		Payload:  body[14+tl:],
	}, pos, nil
}

// Ack marks the record at pos delivered and reports whether it was new: false for
// a record dropped meanwhile, or acknowledged before (a replay).
func (b *Buffer) Ack(pos Pos) bool {
	b.mu.Lock()
	defer b.mu.Unlock()
	if n, ok := b.limbo[pos]; ok { // dropped while in flight, delivered after all
		delete(b.limbo, pos)
		b.m.acked.Add(float64(n))
		return true
	}
	s := b.seg(pos.seg)
	if s == nil || pos.idx >= len(s.recs) || s.acked[pos.idx] != 0 {
		return false
	}
	s.acked[pos.idx] = b.opt.Now().UnixNano()
	b.m.acked.Add(float64(s.recs[pos.idx].samples))
	moved := false
	for {
		h := b.seg(b.head.seg)
		for b.head.idx < len(h.recs) && h.acked[b.head.idx] != 0 {
			b.head.idx++
			moved = true
		}
		if b.head.idx < len(h.recs) || h == b.segs[len(b.segs)-1] {
			break
		}
		b.head = Pos{seg: h.id + 1} // fully acknowledged and not the tail
		moved = true
	}
	if moved {
		b.expire()
		b.writeHead()
		b.publishGauges()
		b.notify()
	}
	return true
}

// Rewind moves the cursor back so that Next hands out every unacknowledged record
// again (after the connection to the broker was lost); with replay, from the oldest
// record acknowledged within the replay window, so that what a crashed broker lost
// is sent again too.
func (b *Buffer) Rewind(replay bool) {
	b.mu.Lock()
	defer b.mu.Unlock()
	b.dropLimbo() // what was in flight when dropped will not be sent again
	b.expire()
	b.cursor = b.head
	if replay && b.opt.ReplayWindow > 0 {
		cutoff := b.opt.Now().Add(-b.opt.ReplayWindow).UnixNano()
	find:
		for _, s := range b.segs {
			for i, a := range s.acked {
				if a == 0 || a >= cutoff {
					b.cursor = Pos{seg: s.id, idx: i}
					break find
				}
			}
		}
	}
	b.notify()
}

// Pending returns the unacknowledged records and samples, and the bytes on disk.
func (b *Buffer) Pending() (records, samples int, bytes int64) {
	b.mu.Lock()
	defer b.mu.Unlock()
	for _, s := range b.segs {
		for i := range s.recs {
			if s.acked[i] == 0 {
				records++
				samples += s.recs[i].samples
			}
		}
	}
	return records, samples, b.bytes
}

func (b *Buffer) publishGauges() {
	b.m.bytes.Set(float64(b.bytes))
	b.m.maxBytes.Set(float64(b.opt.MaxBytes))
	n := 0
	for _, s := range b.segs {
		if s.id >= b.head.seg {
			n += len(s.recs)
		}
	}
	b.m.records.Set(float64(n - b.head.idx))
}

// Close syncs and closes the files. Waiting Append and Next calls return ErrClosed.
func (b *Buffer) Close() error {
	b.mu.Lock()
	defer b.mu.Unlock()
	if b.closed {
		return nil
	}
	b.closed = true
	b.dropLimbo()
	b.writeHead()
	b.notify()
	return b.closeFiles()
}

func (b *Buffer) closeFiles() error {
	var errs []error
	for _, s := range b.segs {
		errs = append(errs, s.file.Sync(), s.file.Close())
	}
	if b.headFile != nil {
		errs = append(errs, b.headFile.Sync(), b.headFile.Close())
	}
	return errors.Join(errs...)
}
