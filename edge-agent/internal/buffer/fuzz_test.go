package buffer

import (
	"encoding/binary"
	"hash/crc32"
	"math"
	"os"
	"path/filepath"
	"testing"
)

// FuzzRecoverSegment: a buffer opens over a segment file of any bytes (a power loss, a
// bad disk) without a panic and without allocating more than the file holds, and
// then takes and gives back a record.
func FuzzRecoverSegment(f *testing.F) {
	dir := f.TempDir()
	b, err := Open(Options{Dir: dir, MaxBytes: 1 << 20, SegmentBytes: 1 << 18})
	if err != nil {
		f.Fatal(err)
	}
	b.Append(f.Context(), Record{Topic: "takt/v1/t/s/a/l/e", Payload: []byte(`{"x":1}`), FirstSeq: 1, Samples: 1})
	b.Close()
	good, _ := os.ReadFile(filepath.Join(dir, segName(0)))
	f.Add(good)
	f.Add(append(append([]byte{}, good...), 0xff, 0xff, 0xff, 0xff, 1, 2, 3, 4))
	f.Add([]byte{0xff, 0xff, 0xff, 0xfe})
	f.Add([]byte{})
	f.Fuzz(func(t *testing.T, seg []byte) {
		dir := t.TempDir()
		if err := os.WriteFile(filepath.Join(dir, segName(0)), seg, 0o640); err != nil {
			t.Fatal(err)
		}
		b, err := Open(Options{Dir: dir, MaxBytes: 1 << 20, SegmentBytes: 1 << 18})
		if err != nil {
			return // an error, not a panic or a crash loop
		}
		defer b.Close()
		if err := b.Append(t.Context(), Record{Topic: "takt/v1/t/s/a/l/e", Payload: []byte("p"), FirstSeq: b.LastSeq() + 1, Samples: 1}); err != nil {
			t.Fatalf("append after recovery: %v", err)
		}
	})
}

// FuzzRecoverHead: a head file naming any segment, record and seq (with a valid
// checksum, so that the values themselves are tried) never makes Open panic, delete
// a segment that holds unsent records, or hand out a seq beyond 2^63-1.
func FuzzRecoverHead(f *testing.F) {
	f.Add(uint64(0), uint64(0), uint64(0))
	f.Add(uint64(0), uint64(1), uint64(1))
	f.Add(uint64(7), uint64(1<<40), uint64(1<<63))
	f.Add(^uint64(0), ^uint64(0), ^uint64(0))
	f.Fuzz(func(t *testing.T, seg, idx, lastSeq uint64) {
		dir := t.TempDir()
		b, err := Open(Options{Dir: dir, MaxBytes: 1 << 20, SegmentBytes: 1 << 18})
		if err != nil {
			t.Fatal(err)
		}
		for i := range 3 {
			b.Append(t.Context(), Record{Topic: "takt/v1/t/s/a/l/e", Payload: []byte("p"), FirstSeq: uint64(i + 1), Samples: 1})
		}
		b.Close()
		var head [28]byte
		binary.LittleEndian.PutUint64(head[0:], seg)
		binary.LittleEndian.PutUint64(head[8:], idx)
		binary.LittleEndian.PutUint64(head[16:], lastSeq)
		binary.LittleEndian.PutUint32(head[24:], crc32.Checksum(head[:24], crcTable))
		if err := os.WriteFile(filepath.Join(dir, "head"), head[:], 0o640); err != nil {
			t.Fatal(err)
		}
		b, err = Open(Options{Dir: dir, MaxBytes: 1 << 20, SegmentBytes: 1 << 18})
		if err != nil {
			return
		}
		defer b.Close()
		if b.LastSeq() < 3 || b.LastSeq() > math.MaxInt64 {
			t.Fatalf("head (%d, %d, %d): last seq %d, want 3 to 2^63-1", seg, idx, lastSeq, b.LastSeq())
		}
		if seg > 1 { // segment 1 would be the next one: all of segment 0 sent
			if recs, _, _ := b.Pending(); recs != 3 {
				t.Fatalf("head (%d, %d, %d) naming a segment that never was: %d records left, want the 3 unsent ones", seg, idx, lastSeq, recs)
			}
		}
	})
}
