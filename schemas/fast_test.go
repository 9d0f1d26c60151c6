package schemas

import (
	"os"
	"path/filepath"
	"reflect"
	"testing"
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
		`{"version":1,"Tenant":"a","samples":[]}`,            // another case: encoding/json matches it
		`{"version":1,"tenant":"a","tenant":"b"}`,            // twice: encoding/json keeps the last
		`{"version":1,"tenant":"\u0061"}`,                    // an escape
		`{"version":1,"samples":[{"seq":1e2}]}`,              // a float for an integer
		`{"version":1,"samples":[{"value":1e400}]}`,          // beyond a float64
		`{"version":1,"samples":[{"role":"nonsense"}]}`,      // an unknown name
		`{"version":1,"samples":[{"reason":4294967296}]}`,    // beyond a uint32
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
