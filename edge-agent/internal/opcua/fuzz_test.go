package opcua

import (
	"bytes"
	"log/slog"
	"math"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/gopcua/opcua/ua"

	"takt.dev/edge-agent/internal/source"
)

// FuzzDataValue: whatever value, status and timestamps a server sends for a node
// (any variant type the agent may meet, any bits, any text), the agent turns it into
// a reading without a panic: a good or uncertain reading holds a finite-or-not number
// (the batcher degrades what the contract cannot carry) or a text, a bad one says
// why, and the reading is stamped. (The wire decoding itself is gopcua's: its
// v0.8.0 decoder panics on a Variant array length below -1, upstream
// gopcua/opcua#892, so raw bytes are not fuzzed through it here; see the README.)
func FuzzDataValue(f *testing.F) {
	now := time.Date(2026, 12, 1, 8, 0, 0, 0, time.UTC)
	f.Add(uint8(0), uint64(1), "", uint32(0), now.UnixNano(), now.UnixNano())
	f.Add(uint8(9), math.Float64bits(math.NaN()), "", uint32(0x40000000), int64(0), now.UnixNano())
	f.Add(uint8(10), uint64(0), "RUNNING\x00\xff", uint32(0x80000000), int64(-1), int64(0))
	f.Add(uint8(12), uint64(1<<63), "", uint32(0), int64(math.MaxInt64), int64(math.MinInt64))
	cfg := Config{Name: "fuzz", Tags: []Tag{{Tag: source.Tag{Name: "t"}, NodeID: "ns=1;s=t"}}}
	f.Fuzz(func(t *testing.T, kind uint8, bits uint64, text string, status uint32, src, srv int64) {
		var v any
		switch kind % 15 {
		case 0:
			v = bits&1 == 1
		case 1:
			v = int8(bits)
		case 2:
			v = uint8(bits)
		case 3:
			v = int16(bits)
		case 4:
			v = uint16(bits)
		case 5:
			v = int32(bits)
		case 6:
			v = uint32(bits)
		case 7:
			v = int64(bits)
		case 8:
			v = bits
		case 9:
			v = math.Float64frombits(bits)
		case 10:
			v = text
		case 11:
			v = float32(math.Float32frombits(uint32(bits)))
		case 12:
			v = time.Unix(0, int64(bits)).UTC()
		case 13:
			v = ua.NewLocalizedText(text)
		case 14:
			v = []byte(text) // a type the agent does not take
		}
		variant, err := ua.NewVariant(v)
		if err != nil {
			return
		}
		dv := &ua.DataValue{Value: variant, Status: ua.StatusCode(status), SourceTimestamp: time.Unix(0, src).UTC(), ServerTimestamp: time.Unix(0, srv).UTC()}
		s := NewServer(cfg, "fuzz", NewMetrics(nil), slog.New(slog.DiscardHandler))
		s.now = func() time.Time { return now }
		r := s.reading(0, dv)
		if r.TS.IsZero() {
			t.Fatal("a reading without a time")
		}
		switch r.Quality {
		case source.Bad:
			if r.Err == nil {
				t.Fatal("a bad reading without its reason")
			}
		case source.Good, source.Uncertain:
			if r.Value.IsText && r.Value.Num != 0 {
				t.Fatalf("a text reading with a number: %+v", r.Value)
			}
			if kind%15 == 14 {
				t.Fatalf("a value of type %T accepted", v)
			}
		default:
			t.Fatalf("quality %v", r.Quality)
		}
	})
}

// Servers that start at once make one client certificate between them: the one
// the file holds, which an operator copies to the servers' trust lists.
func TestOneCertificateForServersStartingAtOnce(t *testing.T) {
	dir := t.TempDir()
	cert, key := filepath.Join(dir, "own", "cert.pem"), filepath.Join(dir, "own", "key.pem")
	ders := make(chan []byte, 8)
	var wg sync.WaitGroup
	for range 8 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			der, _, err := LoadOrCreateCertificate(cert, key, "gw")
			if err != nil {
				t.Error(err)
			}
			ders <- der
		}()
	}
	wg.Wait()
	close(ders)
	onDisk, _, err := LoadOrCreateCertificate(cert, key, "gw")
	if err != nil {
		t.Fatal(err)
	}
	for der := range ders {
		if !bytes.Equal(der, onDisk) {
			t.Fatal("a server presents a certificate other than the one in cert.pem")
		}
	}
	c := Config{Name: "x", Endpoint: "opc.tcp://h:4840", Auth: "username", Username: "u", Password: "p", Tags: []Tag{{Tag: source.Tag{Name: "t"}, NodeID: "ns=1;s=t"}}}
	c.Defaults(source.Env{Dir: dir})
	if errs := c.Validate(); len(errs) != 1 || !strings.Contains(errs[0].Error(), "security_policy None: the password would cross the network unprotected") {
		t.Fatalf("username over security None: %v", errs)
	}
}
