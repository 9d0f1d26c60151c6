package schemas_test

import (
	"errors"
	"fmt"
	"strings"
	"testing"

	"takt.dev/schemas"
)

func TestTopicRoundTrip(t *testing.T) {
	p := schemas.Path{Tenant: "acme", Site: "lyon", Area: "packaging", Line: "line-1", Equipment: "filler.1_a"}
	topic := p.Topic()
	if topic != "takt/v1/acme/lyon/packaging/line-1/filler.1_a" {
		t.Fatalf("Topic() = %q", topic)
	}
	got, err := schemas.ParseTopic(topic)
	if err != nil {
		t.Fatal(err)
	}
	if got != p {
		t.Fatalf("ParseTopic(%q) = %+v, want %+v", topic, got, p)
	}
	if string(p.Key()) != "acme/filler.1_a" {
		t.Fatalf("Key() = %q", p.Key())
	}
	if s := schemas.SharedSubscription("ingest"); s != "$share/ingest/takt/v1/#" {
		t.Fatalf("SharedSubscription = %q", s)
	}
	if s := schemas.StatusTopic("acme", "gw1"); strings.HasPrefix(s, schemas.TopicRoot+"/") {
		t.Fatalf("status topic %q falls inside the data namespace", s)
	}
}

func TestParseTopicRefuses(t *testing.T) {
	cases := []struct{ topic, want string }{
		{"takt/v2/acme/lyon/pack/l1/e1", "not under takt/v1/"},
		{"takt/v1/acme/lyon/pack/l1", "got 4 levels"},
		{"takt/v1/acme/lyon/pack/l1/e1/extra", "got 6 levels"},
		{"takt/v1/acme//pack/l1/e1", `site: must not be empty`},
		{"takt/v1/acme/lyon/pack/l1/e+1", `equipment = "e+1": character '+' at 1 not allowed`},
		{"takt/v1/acme/lyon/pack/l1/" + strings.Repeat("x", 65), "longer than 64"},
	}
	for _, c := range cases {
		t.Run(c.topic, func(t *testing.T) {
			_, err := schemas.ParseTopic(c.topic)
			if err == nil || !strings.Contains(err.Error(), c.want) {
				t.Fatalf("ParseTopic(%q) error = %v, want it to contain %q", c.topic, err, c.want)
			}
		})
	}
}

func TestEnumNames(t *testing.T) {
	for _, c := range schemas.StateCategories() {
		got, err := schemas.ParseStateCategory(c.String())
		if err != nil || got != c {
			t.Fatalf("ParseStateCategory(%q) = %v, %v", c.String(), got, err)
		}
	}
	if schemas.StateRunning != 1 || schemas.StateUnknown != 0 || schemas.StateNotScheduled != 6 {
		t.Fatal("state category codes are stored in the database and must not change")
	}
	for _, name := range []string{"measurement", "state", "counter"} {
		r, err := schemas.ParseRole(name)
		if err != nil || r.String() != name {
			t.Fatalf("ParseRole(%q) = %v, %v", name, r, err)
		}
	}
	if _, err := schemas.ParseQuality("Good"); err == nil {
		t.Fatal("quality names are case-sensitive")
	}
}

func TestReasonOf(t *testing.T) {
	_, err := schemas.Decode([]byte(`{"version":9}`))
	if r := schemas.ReasonOf(fmt.Errorf("wrapped: %w", err)); r != schemas.ReasonUnsupportedVersion {
		t.Fatalf("ReasonOf = %q", r)
	}
	if r := schemas.ReasonOf(errors.New("plain")); r != schemas.ReasonMalformed {
		t.Fatalf("ReasonOf(plain) = %q", r)
	}
	if f := schemas.SharedFilter("g", "takt/v1/acme/#"); f != "$share/g/takt/v1/acme/#" {
		t.Fatalf("SharedFilter = %q", f)
	}
}
