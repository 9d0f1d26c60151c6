package bridge

import (
	"io"
	"sync"

	"github.com/klauspost/compress/zstd"
	"github.com/segmentio/kafka-go/compress"
)

// zstdWindow is the window of the zstd encoders of Kafka batches. kafka-go's codec
// keeps the library's default, 8 MiB, so that each pooled encoder holds about
// 16 MiB of history: a third of takt-ingest's live heap at its ceiling (its heap
// profile, docs/benchmarks.md). A batch is at most about 1 MiB and the repeats in
// envelopes are a few hundred bytes apart, so a 1 MiB window compresses the same.
const zstdWindow = 1 << 20

// leanZstd is kafka-go's zstd codec (the same format and level, 3) with encoders
// of a 1 MiB window. kafka-go looks codecs up in its global table only, so it is
// installed there: for every writer of this process.
type leanZstd struct{ pool sync.Pool }

func init() { compress.Codecs[compress.Zstd] = &leanZstd{} }

func (*leanZstd) Code() int8   { return int8(compress.Zstd) }
func (*leanZstd) Name() string { return "zstd" }

// NewReader decodes as kafka-go does (decoding needs no encoder state).
func (*leanZstd) NewReader(r io.Reader) io.ReadCloser { return compress.ZstdCodec.NewReader(r) }

func (c *leanZstd) NewWriter(w io.Writer) io.WriteCloser {
	if enc, _ := c.pool.Get().(*zstd.Encoder); enc != nil {
		enc.Reset(w)
		return &zstdWriter{c: c, enc: enc}
	}
	enc, err := zstd.NewWriter(w, zstd.WithEncoderLevel(zstd.EncoderLevelFromZstd(3)), zstd.WithEncoderConcurrency(1),
		zstd.WithZeroFrames(true), zstd.WithWindowSize(zstdWindow), zstd.WithLowerEncoderMem(true))
	return &zstdWriter{c: c, enc: enc, err: err}
}

type zstdWriter struct {
	c   *leanZstd
	enc *zstd.Encoder
	err error
}

func (w *zstdWriter) Write(p []byte) (int, error) {
	if w.err != nil {
		return 0, w.err
	}
	return w.enc.Write(p)
}

func (w *zstdWriter) ReadFrom(r io.Reader) (int64, error) {
	if w.err != nil {
		return 0, w.err
	}
	return w.enc.ReadFrom(r)
}

// Close ends the frame and gives the encoder back for the next batch.
func (w *zstdWriter) Close() error {
	if w.err != nil {
		return w.err
	}
	err := w.enc.Close()
	w.enc.Reset(io.Discard) // keep no reference to the batch's writer
	w.c.pool.Put(w.enc)
	w.err = io.ErrClosedPipe
	return err
}
