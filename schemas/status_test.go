package schemas_test

import (
	"encoding/json"
	"errors"
	"strings"
	"testing"
	"time"

	"takt.dev/schemas"
)

// The status JSON the agent and bridge write is valid against status.schema.json, and
// the codec and the schema refuse the same broken ones.
func TestStatusContract(t *testing.T) {
	sch := compileSchemaFile(t, "status.schema.json")
	good := schemas.AgentStatus{Version: 1, Tenant: "acme", Agent: "gw-1", State: schemas.AgentOnline, Incarnation: "9f2c61d0a4b7e813",
		TS: time.Date(2026, 11, 25, 8, 0, 0, 0, time.UTC), ReceivedAt: time.Date(2026, 11, 25, 8, 0, 0, 4e6, time.UTC),
		Equipment: []string{"filler-1", "capper-1"}, Previous: &schemas.PreviousRun{Incarnation: "41aa", Until: time.Date(2026, 11, 25, 7, 41, 12, 0, time.UTC)}}
	b, _ := json.Marshal(good)
	if err := schemaValidate(sch, b); err != nil {
		t.Fatalf("%s: %v", b, err)
	}
	back, err := schemas.DecodeStatus(b)
	if err != nil || back.Since() != good.TS {
		t.Fatalf("decode: %+v %v", back, err)
	}
	will := good
	will.State, will.Will, will.Previous = schemas.AgentOffline, true, nil
	if will.Since() != will.ReceivedAt {
		t.Fatal("a will takes effect when it was received")
	}
	for _, c := range []struct{ name, json, reason string }{
		{"state", `{"agent":"gw","state":"sleeping","ts":"2026-11-25T08:00:00Z"}`, "invalid"},
		{"agent", `{"agent":"gw/1","state":"online","ts":"2026-11-25T08:00:00Z"}`, "invalid"},
		{"equipment", `{"agent":"gw","state":"online","ts":"2026-11-25T08:00:00Z","equipment":["a b"]}`, "invalid"},
		{"unknown field", `{"agent":"gw","state":"online","ts":"2026-11-25T08:00:00Z","mood":"good"}`, "malformed"},
		{"previous", `{"agent":"gw","state":"online","ts":"2026-11-25T08:00:00Z","previous":{"incarnation":"","until":"2026-11-25T08:00:00Z"}}`, "invalid"},
		{"version", `{"version":2,"agent":"gw","state":"online","ts":"2026-11-25T08:00:00Z"}`, "unsupported_version"},
		{"too large", `{"agent":"gw","state":"online","ts":"2026-11-25T08:00:00Z","incarnation":"` + strings.Repeat("x", 70<<10) + `"}`, "too_large"},
	} {
		t.Run(c.name, func(t *testing.T) {
			_, err := schemas.DecodeStatus([]byte(c.json))
			var de *schemas.DecodeError
			if !errors.As(err, &de) || string(de.Reason) != c.reason {
				t.Fatalf("DecodeStatus: %v, want reason %s", err, c.reason)
			}
			if schemaValidate(sch, []byte(c.json)) == nil {
				t.Fatal("the JSON Schema accepts it")
			}
		})
	}
	if _, _, err := schemas.ParseStatusTopic("takt/status/v1/acme/gw-1"); err != nil {
		t.Fatal(err)
	}
	if _, _, err := schemas.ParseStatusTopic("takt/status/v1/acme/gw 1"); err == nil {
		t.Fatal("a bad agent name in the topic was accepted")
	}
}
