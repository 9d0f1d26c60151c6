package schemas_test

import (
	"encoding/json"
	"errors"
	"testing"

	"takt.dev/schemas"
)

// FuzzDecodeStatus: decoding an agent status from any bytes never panics, refuses with
// a *DecodeError, and what it accepts encodes and decodes to itself.
func FuzzDecodeStatus(f *testing.F) {
	f.Add([]byte(`{"version":1,"tenant":"acme","agent":"gw","state":"online","incarnation":"a1","ts":"2026-11-25T08:00:00Z","equipment":["e1"],"previous":{"incarnation":"a0","until":"2026-11-25T07:00:00Z"}}`))
	f.Add([]byte(`{"agent":"gw","state":"offline","will":true,"ts":"2026-11-25T08:00:00Z"}`))
	f.Add([]byte(`{"agent":"g\u0000w","state":"x","ts":"0000-01-01T00:00:00Z","equipment":[""]}`))
	f.Add([]byte(`{"previous":{}}`))
	f.Fuzz(func(t *testing.T, data []byte) {
		st, err := schemas.DecodeStatus(data)
		if err != nil {
			var de *schemas.DecodeError
			if !errors.As(err, &de) {
				t.Fatalf("error is %T, want *DecodeError: %v", err, err)
			}
			return
		}
		b, err := json.Marshal(st)
		if err != nil {
			t.Fatal(err)
		}
		if _, err := schemas.DecodeStatus(b); err != nil {
			t.Fatalf("an accepted status does not decode again: %v\n%s", err, b)
		}
	})
}

// FuzzParseTopic: any topic parses or is refused, never panics; what parses is a
// valid path whose topic is the input.
func FuzzParseTopic(f *testing.F) {
	for _, s := range []string{"takt/v1/acme/lyon/pack/l1/filler-1", "takt/v1/a/b/c/d/e/f", "takt/v1//////", "takt/status/v1/acme/gw", "takt/v1/\x00/b/c/d/e", ""} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, topic string) {
		if p, err := schemas.ParseTopic(topic); err == nil {
			if p.Validate() != nil || p.Topic() != topic {
				t.Fatalf("%q parsed to %+v", topic, p)
			}
		}
		if tenant, agent, err := schemas.ParseStatusTopic(topic); err == nil {
			if schemas.StatusTopic(tenant, agent) != topic {
				t.Fatalf("%q parsed to %s/%s", topic, tenant, agent)
			}
		}
	})
}
