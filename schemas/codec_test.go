package schemas_test

import (
	"bytes"
	"errors"
	"flag"
	"math"
	"os"
	"path/filepath"
	"reflect"
	"runtime"
	"strings"
	"testing"
	"time"

	"github.com/santhosh-tekuri/jsonschema/v6"

	"takt.dev/schemas"
)

var update = flag.Bool("update", false, "rewrite the golden .err files of testdata/invalid")

// schemaAccepts lists the invalid examples that JSON Schema cannot express the rule
// for; the Go codec refuses them, the schema lets them through.
var schemaAccepts = map[string]string{
	"seq-not-increasing": "order between array items",
	"counter-above-wrap": "comparison between two fields",
	"infinity":           "1e999 is a JSON number; only parsing it overflows",
}

func compileSchema(t testing.TB) *jsonschema.Schema {
	return compileSchemaFile(t, "envelope.schema.json")
}

func compileSchemaFile(t testing.TB, name string) *jsonschema.Schema {
	t.Helper()
	f, err := os.Open(name)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	doc, err := jsonschema.UnmarshalJSON(f)
	if err != nil {
		t.Fatalf("%s: %v", name, err)
	}
	c := jsonschema.NewCompiler()
	c.AssertFormat()
	if err := c.AddResource(name, doc); err != nil {
		t.Fatal(err)
	}
	sch, err := c.Compile(name)
	if err != nil {
		t.Fatalf("compile %s: %v", name, err)
	}
	return sch
}

func schemaValidate(sch *jsonschema.Schema, data []byte) error {
	inst, err := jsonschema.UnmarshalJSON(bytes.NewReader(data))
	if err != nil {
		return err
	}
	return sch.Validate(inst)
}

func examples(t *testing.T, dir string) map[string][]byte {
	t.Helper()
	files, err := filepath.Glob(filepath.Join("testdata", dir, "*.json"))
	if err != nil || len(files) == 0 {
		t.Fatalf("no examples in testdata/%s: %v", dir, err)
	}
	out := map[string][]byte{}
	for _, f := range files {
		b, err := os.ReadFile(f)
		if err != nil {
			t.Fatal(err)
		}
		out[strings.TrimSuffix(filepath.Base(f), ".json")] = b
	}
	return out
}

func TestValidExamples(t *testing.T) {
	sch := compileSchema(t)
	for name, data := range examples(t, "valid") {
		t.Run(name, func(t *testing.T) {
			if err := schemaValidate(sch, data); err != nil {
				t.Fatalf("JSON Schema refuses a valid example: %v", err)
			}
			env, err := schemas.Decode(data)
			if err != nil {
				t.Fatalf("Decode: %v", err)
			}
			out, err := schemas.Encode(env)
			if err != nil {
				t.Fatalf("Encode: %v", err)
			}
			if err := schemaValidate(sch, out); err != nil {
				t.Fatalf("JSON Schema refuses what Encode wrote: %v\n%s", err, out)
			}
			again, err := schemas.Decode(out)
			if err != nil {
				t.Fatalf("Decode(Encode(x)): %v\n%s", err, out)
			}
			if !reflect.DeepEqual(env, again) {
				t.Fatalf("round trip changed the envelope:\nfirst  %+v\nsecond %+v", env, again)
			}
		})
	}
}

func TestInvalidExamples(t *testing.T) {
	sch := compileSchema(t)
	for name, data := range examples(t, "invalid") {
		t.Run(name, func(t *testing.T) {
			_, err := schemas.Decode(data)
			if err == nil {
				t.Fatal("Decode accepted an invalid example")
			}
			var de *schemas.DecodeError
			if !errors.As(err, &de) {
				t.Fatalf("error is %T, want *schemas.DecodeError: %v", err, err)
			}
			golden := filepath.Join("testdata", "invalid", name+".err")
			got := err.Error() + "\n"
			if *update {
				if err := os.WriteFile(golden, []byte(got), 0o644); err != nil {
					t.Fatal(err)
				}
			}
			want, rerr := os.ReadFile(golden)
			if rerr != nil {
				t.Fatalf("%v (run go test -update to create it)", rerr)
			}
			if got != string(want) {
				t.Errorf("error message\n got: %s want: %s", got, want)
			}
			serr := schemaValidate(sch, data)
			if why, ok := schemaAccepts[name]; ok {
				if serr != nil {
					t.Errorf("listed as accepted by the schema (%s), but the schema refuses it: %v", why, serr)
				}
			} else if serr == nil {
				t.Error("JSON Schema accepts an example the Go codec refuses; tighten envelope.schema.json")
			}
		})
	}
}

func sample() schemas.Envelope {
	return schemas.Envelope{
		Version: schemas.Version, Tenant: "acme", Site: "lyon", Area: "pack", Line: "l1", Equipment: "filler-1", Agent: "gw1",
		Samples: []schemas.Sample{{
			Seq: 1, Tag: "speed", Role: schemas.RoleMeasurement, TS: time.Date(2026, 11, 25, 8, 0, 0, 0, time.UTC),
			Kind: schemas.NumberValue, Value: 1, Quality: schemas.QualityGood,
		}},
	}
}

func TestEncodeRefusesInvalidValues(t *testing.T) {
	cases := []struct {
		name  string
		mod   func(*schemas.Envelope)
		field string
	}{
		{"nan", func(e *schemas.Envelope) { e.Samples[0].Value = math.NaN() }, "samples[0].value"},
		{"inf", func(e *schemas.Envelope) { e.Samples[0].Value = math.Inf(-1) }, "samples[0].value"},
		{"zero time", func(e *schemas.Envelope) { e.Samples[0].TS = time.Time{} }, "samples[0].ts"},
		{"no value good quality", func(e *schemas.Envelope) { e.Samples[0].Kind = schemas.NoValue }, "samples[0].value"},
		{"bad utf8 tag", func(e *schemas.Envelope) { e.Samples[0].Tag = "\xff" }, "samples[0].tag"},
		{"agent", func(e *schemas.Envelope) { e.Agent = "gw 1" }, "agent"},
		{"line", func(e *schemas.Envelope) { e.Line = "" }, "line"},
		{"version", func(e *schemas.Envelope) { e.Version = 3 }, "version"},
		{"role", func(e *schemas.Envelope) { e.Samples[0].Role = 9 }, "samples[0].role"},
		{"state on measurement", func(e *schemas.Envelope) { e.Samples[0].State = schemas.StateRunning }, "samples[0].role"},
		{"traceparent", func(e *schemas.Envelope) { e.TraceParent = "00-abc" }, "traceparent"},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			e := sample()
			c.mod(&e)
			_, err := schemas.Encode(&e)
			var fe *schemas.FieldError
			if !errors.As(err, &fe) {
				t.Fatalf("Encode error = %v, want a *FieldError", err)
			}
			if fe.Field != c.field {
				t.Fatalf("error names field %q, want %q (%v)", fe.Field, c.field, err)
			}
		})
	}
}

func TestEncodeEscapesStrings(t *testing.T) {
	e := sample()
	e.Samples[0].Tag = "a\"b\\c/ü"
	out, err := schemas.Encode(&e)
	if err != nil {
		t.Fatal(err)
	}
	back, err := schemas.Decode(out)
	if err != nil {
		t.Fatalf("%v\n%s", err, out)
	}
	if back.Samples[0].Tag != e.Samples[0].Tag {
		t.Fatalf("tag %q came back as %q", e.Samples[0].Tag, back.Samples[0].Tag)
	}
	if err := schemaValidate(compileSchema(t), out); err != nil {
		t.Fatal(err)
	}
}

// The trace context travels with the envelope (and passes the JSON Schema); a
// malformed one on the wire is ignored, the envelope accepted.
func TestTraceParent(t *testing.T) {
	const tp = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01"
	e := sample()
	e.TraceParent = tp
	out, err := schemas.Encode(&e)
	if err != nil {
		t.Fatal(err)
	}
	if err := schemaValidate(compileSchema(t), out); err != nil {
		t.Fatal(err)
	}
	back, err := schemas.Decode(out)
	if err != nil || back.TraceParent != tp {
		t.Fatalf("decoded traceparent %q, %v", back.TraceParent, err)
	}
	if got := schemas.PeekTraceParent(out); got != tp {
		t.Fatalf("PeekTraceParent = %q", got)
	}
	e.TraceParent, e.Samples[0].Kind, e.Samples[0].Text = "", schemas.TextValue, `,"traceparent":"`+tp+`"`
	if plain, err := schemas.Encode(&e); err != nil || schemas.PeekTraceParent(plain) != "" {
		t.Fatalf("PeekTraceParent of an envelope without one, whose text holds one: %q (%v)", schemas.PeekTraceParent(plain), err)
	}
	for _, bad := range []string{"00-4BF92F3577B34DA6A3CE929D0E0E4736-00f067aa0ba902b7-01", "00-00000000000000000000000000000000-00f067aa0ba902b7-01",
		"00-4bf92f3577b34da6a3ce929d0e0e4736-0000000000000000-01", "01-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01", "junk", ""} {
		if schemas.ValidTraceParent(bad) {
			t.Errorf("%q taken for a traceparent", bad)
		}
		wire := strings.Replace(string(out), tp, bad, 1)
		back, err := schemas.Decode([]byte(wire))
		if err != nil || back.TraceParent != "" {
			t.Errorf("traceparent %q: decoded %q, %v; want it ignored and the envelope accepted", bad, back.TraceParent, err)
		}
	}
}

func TestLimits(t *testing.T) {
	e := sample()
	for i := 1; i < 5; i++ {
		s := e.Samples[0]
		s.Seq = uint64(i + 1)
		e.Samples = append(e.Samples, s)
	}
	data, err := schemas.Encode(&e)
	if err != nil {
		t.Fatal(err)
	}
	for _, c := range []struct {
		name   string
		limits schemas.Limits
		ok     bool
	}{
		{"defaults", schemas.Limits{}, true},
		{"bytes", schemas.Limits{MaxBytes: len(data) - 1}, false},
		{"samples", schemas.Limits{MaxSamples: 4}, false},
		{"exact", schemas.Limits{MaxBytes: len(data), MaxSamples: 5}, true},
	} {
		t.Run(c.name, func(t *testing.T) {
			_, err := c.limits.Decode(data)
			if c.ok != (err == nil) {
				t.Fatalf("Decode with %+v: err = %v, want ok=%v", c.limits, err, c.ok)
			}
			var de *schemas.DecodeError
			if err != nil && (!errors.As(err, &de) || de.Reason != schemas.ReasonTooLarge) {
				t.Fatalf("err = %v, want reason too_large", err)
			}
		})
	}
}

// An envelope of a megabyte of empty samples is refused at the first sample over
// the limit: what Decode allocates is bounded by the limit, not by the message
// (decoding every sample first took about 70 MB for this message).
func TestSampleLimitBeforeAllocation(t *testing.T) {
	data := []byte(`{"version":1,"tenant":"a","site":"s","area":"a","line":"l","equipment":"e","agent":"g","samples":[{}`)
	for len(data) < 1<<20-8 {
		data = append(data, ",{}"...)
	}
	data = append(data, "]}"...)
	var before, after runtime.MemStats
	runtime.GC()
	runtime.ReadMemStats(&before)
	_, err := schemas.Limits{MaxBytes: 1 << 20, MaxSamples: 1000}.Decode(data)
	runtime.ReadMemStats(&after)
	var de *schemas.DecodeError
	if !errors.As(err, &de) || de.Reason != schemas.ReasonTooLarge {
		t.Fatalf("err = %v, want too_large", err)
	}
	if alloc := after.TotalAlloc - before.TotalAlloc; alloc > 8<<20 {
		t.Fatalf("refusing %d bytes of samples allocated %d bytes; want at most 8 MiB", len(data), alloc)
	}
}

func FuzzDecode(f *testing.F) {
	for _, dir := range []string{"valid", "invalid"} {
		files, _ := filepath.Glob(filepath.Join("testdata", dir, "*.json"))
		for _, file := range files {
			b, err := os.ReadFile(file)
			if err != nil {
				f.Fatal(err)
			}
			f.Add(b)
		}
	}
	f.Add([]byte(`{"version":1,"samples":[{"role":null,"value":null,"text":null}]}`))
	f.Add([]byte(`{"version":1e309}`))
	f.Add([]byte("{\"version\":1,\"tenant\":\"\xff\"}"))
	f.Fuzz(func(t *testing.T, data []byte) {
		env, err := schemas.Decode(data)
		if err != nil {
			var de *schemas.DecodeError
			if !errors.As(err, &de) {
				t.Fatalf("error is %T, want *DecodeError: %v", err, err)
			}
			return
		}
		out, err := schemas.Encode(env)
		if err != nil {
			t.Fatalf("a decoded envelope does not encode: %v", err)
		}
		again, err := schemas.Decode(out)
		if err != nil {
			t.Fatalf("Decode(Encode(x)): %v\n%s", err, out)
		}
		if !reflect.DeepEqual(env, again) {
			t.Fatalf("round trip changed the envelope:\n%+v\n%+v", env, again)
		}
	})
}

// BenchmarkDecode decodes and validates a typical envelope: 200 samples of one
// equipment, mostly measurements with a few states and counters.
func BenchmarkDecode(b *testing.B) {
	e := sample()
	e.Samples = e.Samples[:0]
	ts := time.Date(2026, 11, 25, 8, 0, 0, 123456000, time.UTC)
	for i := range 200 {
		s := schemas.Sample{Seq: uint64(1000 + i), Tag: "tag-" + string(rune('a'+i%26)), Role: schemas.RoleMeasurement,
			TS: ts.Add(time.Duration(i) * time.Millisecond), Kind: schemas.NumberValue, Value: float64(i) * 1.25, Quality: schemas.QualityGood}
		switch i % 20 {
		case 0:
			s.Role, s.State, s.Reason, s.Value = schemas.RoleState, schemas.StateRunning, 0, 1
		case 1:
			s.Role, s.Counter, s.Value, s.Wrap = schemas.RoleCounter, schemas.CounterTotal, float64(i*10), 65536
		}
		e.Samples = append(e.Samples, s)
	}
	data, err := schemas.Encode(&e)
	if err != nil {
		b.Fatal(err)
	}
	b.SetBytes(int64(len(data)))
	b.ReportAllocs()
	b.ResetTimer()
	for b.Loop() {
		if _, err := schemas.Decode(data); err != nil {
			b.Fatal(err)
		}
	}
	b.StopTimer()
	n := float64(b.N) * float64(len(e.Samples))
	b.ReportMetric(n/b.Elapsed().Seconds(), "samples/s")
	b.ReportMetric(float64(testing.AllocsPerRun(20, func() { _, _ = schemas.Decode(data) }))/float64(len(e.Samples)), "allocs/sample")
}
