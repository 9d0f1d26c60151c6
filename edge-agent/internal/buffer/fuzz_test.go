package buffer

import (
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
