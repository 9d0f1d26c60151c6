package schemas

import (
	"os"
	"path/filepath"
	"reflect"
	"testing"
	"time"
)

// fastSeeds are the test envelopes, and inputs the fast path must leave to the slow one.
func fastSeeds(tb testing.TB) [][]byte {
	var seeds [][]byte
	for _, dir := range []string{"valid", "invalid"} {
		files, _ := filepath.Glob(filepath.Join("testdata", dir, "*.json"))
		for _, file := range files {
			b, err := os.ReadFile(file)
			if err != nil {
				tb.Fatal(err)
			}
			seeds = append(seeds, b)
		}
	}
	for _, s := range []string{
		`{"version":1,"tenant":"a","site":"s","area":"a","line":"l","equipment":"e","agent":"g","samples":[{"seq":1,"tag":"t","role":"measurement","ts":"2026-11-25T08:00:00Z","value":1,"quality":"good"}]}`,
		`{"version":1,"Tenant":"a","samples":[]}`,         // another case: encoding/json matches it
		`{"version":1,"tenant":"a","tenant":"b"}`,         // twice: encoding/json keeps the last
		`{"version":1,"tenant":"\u0061"}`,                 // an escape
		`{"version":1,"samples":[{"seq":1e2}]}`,           // a float for an integer
		`{"version":1,"samples":[{"value":1e400}]}`,       // beyond a float64
		`{"version":1,"samples":[{"role":"nonsense"}]}`,   // an unknown name
		`{"version":1,"samples":[{"reason":4294967296}]}`, // beyond a uint32
		`{"version":1,"samples":[{"seq":18446744073709551616}]}`,
		`{"version":1,"samples":[{"text":null}]}`,
		"{\"version\":1,\"tenant\":\"\xff\"}",
		`{"version":1} {}`,
		` {"version" : 1 , "samples" : [ ] } `,
	} {
		seeds = append(seeds, []byte(s))
	}
	return seeds
}

// Whatever the fast path accepts, encoding/json reads the same way.
func checkFastAgrees(t *testing.T, data []byte) {
	t.Helper()
	fast := wireEnvelope{Samples: wireSamples{max: 50}}
	if !parseFast(data, &fast) {
		return
	}
	slow := wireEnvelope{Samples: wireSamples{max: 50}}
	if err := parseSlow(data, &slow); err != nil {
		t.Fatalf("the fast path accepted what encoding/json refuses (%v):\n%s", err, data)
	}
	fast.Samples.pooled = nil
	for i := range fast.Samples.list {
		// The fast path parses the usual timestamps itself: the same instant as
		// time.Parse, and the literal otherwise.
		f := &fast.Samples.list[i]
		if f.tsSet {
			if i >= len(slow.Samples.list) {
				t.Fatalf("the fast path found more samples in\n%s", data)
			}
			want, err := time.Parse(time.RFC3339Nano, slow.Samples.list[i].TS)
			if err != nil || !want.Equal(f.ts) || want.Location() != time.UTC {
				t.Fatalf("timestamp %q: fast %v, time.Parse %v (%v)", slow.Samples.list[i].TS, f.ts, want, err)
			}
			f.TS, f.ts, f.tsSet = slow.Samples.list[i].TS, time.Time{}, false
		}
	}
	if len(fast.Samples.list) == 0 {
		fast.Samples.list = nil
	}
	if len(slow.Samples.list) == 0 {
		slow.Samples.list = nil
	}
	if !reflect.DeepEqual(fast, slow) {
		t.Fatalf("the paths disagree on\n%s\nfast: %+v\nslow: %+v", data, fast, slow)
	}
}

func TestFastPathAgrees(t *testing.T) {
	accepted := 0
	for _, data := range fastSeeds(t) {
		checkFastAgrees(t, data)
		w := wireEnvelope{Samples: wireSamples{max: 50}}
		if parseFast(data, &w) {
			accepted++
		}
	}
	if accepted < 10 {
		t.Fatalf("the fast path took only %d of the test envelopes", accepted)
	}
}

func FuzzFastPathAgrees(f *testing.F) {
	for _, s := range fastSeeds(f) {
		f.Add(s)
	}
	f.Fuzz(checkFastAgrees)
}

// The timestamps the fast path parses itself are the instants time.Parse gives; the
// others it leaves to time.Parse.
func TestParseTimestamp(t *testing.T) {
	for _, c := range []struct {
		in   string
		fast bool
	}{
		{"2026-11-25T08:00:00Z", true}, {"2026-11-25T08:00:00.1Z", true}, {"2026-11-25T08:00:00.123456789Z", true},
		{"2024-02-29T23:59:59.999Z", true}, {"0001-01-01T00:00:00Z", true}, {"9999-12-31T23:59:59Z", true},
		{"2026-02-29T00:00:00Z", false}, {"2026-04-31T00:00:00Z", false}, {"2026-11-25T24:00:00Z", false},
		{"2026-11-25T08:00:60Z", false}, {"2026-11-25T08:00:00+01:00", false}, {"2026-11-25T08:00:00,5Z", false},
		{"2026-11-25T08:00:00.Z", false}, {"2026-11-25T08:00:00.1234567890Z", false}, {"2026-11-25t08:00:00z", false},
		{"2026-13-25T08:00:00Z", false}, {"20261125T080000Z", false}, {"2026-11-25T08:00:00", false}, {"+026-11-25T08:00:00Z", false},
	} {
		got, ok := parseTimestamp([]byte(c.in))
		if ok != c.fast {
			t.Errorf("%q: fast path %v, want %v", c.in, ok, c.fast)
			continue
		}
		if ok {
			want, err := time.Parse(time.RFC3339Nano, c.in)
			if err != nil || !want.Equal(got) {
				t.Errorf("%q: %v, time.Parse %v (%v)", c.in, got, want, err)
			}
		}
	}
}

func FuzzParseTimestamp(f *testing.F) {
	f.Add("2026-11-25T08:00:00.125Z")
	f.Add("2024-02-29T23:59:59Z")
	f.Fuzz(func(t *testing.T, in string) {
		got, ok := parseTimestamp([]byte(in))
		if !ok {
			return
		}
		want, err := time.Parse(time.RFC3339Nano, in)
		if err != nil || !want.Equal(got) {
			t.Fatalf("%q: fast %v, time.Parse %v (%v)", in, got, want, err)
		}
	})
}
