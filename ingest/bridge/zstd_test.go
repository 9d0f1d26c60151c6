package bridge

import (
	"bytes"
	"fmt"
	"io"
	"runtime"
	"testing"

	kzstd "github.com/klauspost/compress/zstd"
	"github.com/segmentio/kafka-go/compress"
	kafkazstd "github.com/segmentio/kafka-go/compress/zstd"
)

// A batch of envelopes compressed by the codec takt-ingest installs reads back with
// kafka-go's reader and with the zstd library's own decoder (any Kafka client's),
// and it compresses as well as kafka-go's codec; a fresh encoder of it allocates a
// fraction of what one of kafka-go's does.
func TestLeanZstd(t *testing.T) {
	if _, ok := compress.Compression(compress.Zstd).Codec().(*leanZstd); !ok {
		t.Fatalf("the zstd codec of kafka-go's table is %T", compress.Compression(compress.Zstd).Codec())
	}
	var batch bytes.Buffer
	for i := range 2000 {
		fmt.Fprintf(&batch, `{"v":1,"tenant":"acme","site":"lyon","area":"pack","line":"line-1","equipment":"filler-%d","agent":"gw-1",`+
			`"samples":[{"seq":%d,"tag":"speed","role":"measurement","ts":"2026-11-25T08:00:%02d.125Z","value":%d.5,"quality":192}]}`, i%7, i, i%60, i*37)
	}
	compressed := func(c compress.Codec) []byte {
		var out bytes.Buffer
		w := c.NewWriter(&out)
		if _, err := io.Copy(w, bytes.NewReader(batch.Bytes())); err != nil {
			t.Fatal(err)
		}
		if err := w.Close(); err != nil {
			t.Fatal(err)
		}
		return out.Bytes()
	}
	ours := &leanZstd{}
	for range 2 { // the second batch on a pooled encoder
		z := compressed(ours)
		r := compress.ZstdCodec.NewReader(bytes.NewReader(z))
		got, err := io.ReadAll(r)
		r.Close()
		if err != nil || !bytes.Equal(got, batch.Bytes()) {
			t.Fatalf("kafka-go's reader: %d bytes, %v", len(got), err)
		}
		d, _ := kzstd.NewReader(nil)
		if got, err := d.DecodeAll(z, nil); err != nil || !bytes.Equal(got, batch.Bytes()) {
			t.Fatalf("the zstd decoder: %d bytes, %v", len(got), err)
		}
		d.Close()
	}
	theirs := compressed(&kafkazstd.Codec{})
	if z := compressed(ours); len(z) > len(theirs)+len(theirs)/100 {
		t.Errorf("%d bytes of %d compress to %d, kafka-go's codec to %d", batch.Len(), len(batch.Bytes()), len(z), len(theirs))
	}
	allocated := func(c compress.Codec) uint64 {
		var before, after runtime.MemStats
		runtime.ReadMemStats(&before)
		compressed(c)
		runtime.ReadMemStats(&after)
		return after.TotalAlloc - before.TotalAlloc
	}
	if a, b := allocated(&leanZstd{}), allocated(&kafkazstd.Codec{}); a > b/4 {
		t.Errorf("a new encoder and its batch allocate %d bytes, kafka-go's %d", a, b)
	} else {
		t.Logf("a new encoder and its batch allocate %d bytes, kafka-go's %d", a, b)
	}
}
