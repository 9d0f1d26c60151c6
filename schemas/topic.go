package schemas

import (
	"fmt"
	"strings"
)

// MQTT topics.
const (
	// TopicRoot is the first level of every data topic: takt/v1/{tenant}/{site}/{area}/{line}/{equipment}.
	TopicRoot = "takt/v1"
	// StatusRoot is where agents announce themselves (birth and last will), outside the
	// data namespace so that a bridge subscribed to takt/v1/# never sees them.
	StatusRoot = "takt/status/v1"
)

// Kafka topics: a small fixed set, each keyed by Path.Key.
const (
	// KafkaSamples carries every valid envelope as received.
	KafkaSamples = "takt.samples.v1"
	// KafkaEvents carries the state and counter samples of each envelope (measurements
	// removed), in the same envelope format, for the aggregator.
	KafkaEvents = "takt.events.v1"
	// KafkaDeadLetter carries what could not be accepted, as DeadLetter JSON.
	KafkaDeadLetter = "takt.deadletter.v1"
)

// MaxNameLen bounds each namespace level and the agent id.
const MaxNameLen = 64

// Path is an equipment's place in the unified namespace.
type Path struct {
	Tenant, Site, Area, Line, Equipment string
}

// Topic returns the MQTT topic the equipment's envelopes are published on.
func (p Path) Topic() string {
	return TopicRoot + "/" + p.Tenant + "/" + p.Site + "/" + p.Area + "/" + p.Line + "/" + p.Equipment
}

// Key returns the Kafka record key for the equipment: "{tenant}/{equipment}". An
// equipment code is unique within its tenant, so one equipment's records share one
// partition and stay in order there.
func (p Path) Key() []byte {
	return []byte(p.Tenant + "/" + p.Equipment)
}

// Validate reports the first level that is not a valid name (see CheckName).
func (p Path) Validate() error {
	for _, l := range [...]struct{ field, v string }{
		{"tenant", p.Tenant}, {"site", p.Site}, {"area", p.Area}, {"line", p.Line}, {"equipment", p.Equipment},
	} {
		if err := CheckName(l.v); err != nil {
			return fieldErr(l.field, l.v, "%v", err)
		}
	}
	return nil
}

// ParseTopic parses a data topic into its Path. It refuses topics outside
// takt/v1, with the wrong number of levels, or with invalid names.
func ParseTopic(topic string) (Path, error) {
	rest, ok := strings.CutPrefix(topic, TopicRoot+"/")
	if !ok {
		return Path{}, fmt.Errorf("topic %q: not under %s/", topic, TopicRoot)
	}
	parts := strings.Split(rest, "/")
	if len(parts) != 5 {
		return Path{}, fmt.Errorf("topic %q: want %s/{tenant}/{site}/{area}/{line}/{equipment}, got %d levels after %s", topic, TopicRoot, len(parts), TopicRoot)
	}
	p := Path{Tenant: parts[0], Site: parts[1], Area: parts[2], Line: parts[3], Equipment: parts[4]}
	if err := p.Validate(); err != nil {
		return Path{}, fmt.Errorf("topic %q: %w", topic, err)
	}
	return p, nil
}

// SharedSubscription returns the MQTT filter through which the bridges of one group
// split the data topics between them.
func SharedSubscription(group string) string {
	return SharedFilter(group, TopicRoot+"/#")
}

// SharedFilter returns the shared-subscription form of an MQTT filter.
func SharedFilter(group, filter string) string {
	return "$share/" + group + "/" + filter
}

// StatusTopic returns the topic an agent's birth and last-will messages go to.
func StatusTopic(tenant, agent string) string {
	return StatusRoot + "/" + tenant + "/" + agent
}

// CheckName reports whether s can be a namespace level or an agent id: 1 to
// MaxNameLen characters from A-Z, a-z, 0-9, '-', '_' and '.', so that it is safe in
// MQTT topics, Kafka keys, file names and URLs alike.
func CheckName(s string) error {
	if s == "" {
		return fmt.Errorf("must not be empty")
	}
	if len(s) > MaxNameLen {
		return fmt.Errorf("longer than %d characters", MaxNameLen)
	}
	for i := 0; i < len(s); i++ {
		c := s[i]
		if !(c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' || c == '-' || c == '_' || c == '.') {
			return fmt.Errorf("character %q at %d not allowed (use A-Z a-z 0-9 - _ .)", c, i)
		}
	}
	return nil
}
