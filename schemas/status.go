package schemas

import (
	"bytes"
	"encoding/json"
	"fmt"
	"strings"
	"time"
)

// KafkaStatus carries agents' birth and death (AgentStatus JSON), keyed by
// "{tenant}/{agent}": the aggregator learns from it when knowledge of an agent's
// machines ends.
const KafkaStatus = "takt.status.v1"

// Agent states in AgentStatus.State.
const (
	AgentOnline  = "online"
	AgentOffline = "offline"
)

// MaxStatusEquipment bounds the equipment list of one status message, and
// MaxStatusBytes its size.
const (
	MaxStatusEquipment = 4096
	MaxStatusBytes     = 64 << 10
)

// AgentStatus is an agent's birth ("online", published retained when it connects) or
// death ("offline": its MQTT last will, sent by the broker when the connection is
// lost, or published by the agent when it stops). It names the equipment the agent
// serves, so that the end of the agent's knowledge is the end of theirs.
//
// Incarnation identifies one run of the agent process: an agent that comes back
// online with the same incarnation lived through the outage and its disk buffer
// carries what it saw. TS is when the agent built the message (for a will: when it
// connected); ReceivedAt is set by the bridge when the broker delivered it, which
// for a will is when the connection was lost.
type AgentStatus struct {
	Version     int       `json:"version"`
	Tenant      string    `json:"tenant"`
	Agent       string    `json:"agent"`
	State       string    `json:"state"`
	Will        bool      `json:"will,omitempty"`
	Incarnation string    `json:"incarnation,omitempty"`
	TS          time.Time `json:"ts"`
	ReceivedAt  time.Time `json:"received_at,omitzero"`
	Equipment   []string  `json:"equipment,omitempty"`
	// Previous, in a birth, is the run of the agent before this one, as far as it
	// got (Until, by the sources' clock): when it differs from Incarnation, the
	// agent restarted, and its machines were unknown from Until until this run's
	// first readings. It covers a crash or power loss, where no will may carry the
	// right time.
	Previous *PreviousRun `json:"previous,omitempty"`
}

// PreviousRun is how far an earlier run of an agent got.
type PreviousRun struct {
	Incarnation string    `json:"incarnation"`
	Until       time.Time `json:"until"`
}

// Since is when the status took effect: for a last will, when the broker delivered it
// (the connection was lost then); otherwise the agent's own time.
func (s *AgentStatus) Since() time.Time {
	if s.Will && !s.ReceivedAt.IsZero() {
		return s.ReceivedAt
	}
	return s.TS
}

// ParseStatusTopic returns the tenant and agent of a status topic.
func ParseStatusTopic(topic string) (tenant, agent string, err error) {
	rest, ok := strings.CutPrefix(topic, StatusRoot+"/")
	parts := strings.Split(rest, "/")
	if !ok || len(parts) != 2 {
		return "", "", fmt.Errorf("topic %q: want %s/{tenant}/{agent}", topic, StatusRoot)
	}
	for i, f := range [...]string{"tenant", "agent"} {
		if err := CheckName(parts[i]); err != nil {
			return "", "", fmt.Errorf("topic %q: %w", topic, fieldErr(f, parts[i], "%v", err))
		}
	}
	return parts[0], parts[1], nil
}

// DecodeStatus decodes and validates a status message. Errors are *DecodeError with
// the reason a dead letter carries.
func DecodeStatus(b []byte) (*AgentStatus, error) {
	if len(b) > MaxStatusBytes {
		return nil, &DecodeError{ReasonTooLarge, fmt.Errorf("status of %d bytes: over %d", len(b), MaxStatusBytes)}
	}
	var s AgentStatus
	dec := json.NewDecoder(bytes.NewReader(b))
	dec.DisallowUnknownFields()
	if err := dec.Decode(&s); err != nil {
		return nil, &DecodeError{ReasonMalformed, err}
	}
	if err := s.Validate(); err != nil {
		return nil, err
	}
	return &s, nil
}

// Validate checks the fields; version 0 is an agent before version 1 (no tenant,
// incarnation or equipment) and is accepted.
func (s *AgentStatus) Validate() error {
	inv := func(err error) error { return &DecodeError{ReasonInvalid, err} }
	if s.Version != 0 && s.Version != Version {
		return &DecodeError{ReasonUnsupportedVersion, fieldErr("version", s.Version, "want %d", Version)}
	}
	if s.State != AgentOnline && s.State != AgentOffline {
		return inv(fieldErr("state", s.State, "want %q or %q", AgentOnline, AgentOffline))
	}
	if err := CheckName(s.Agent); err != nil {
		return inv(fieldErr("agent", s.Agent, "%v", err))
	}
	if s.Tenant != "" {
		if err := CheckName(s.Tenant); err != nil {
			return inv(fieldErr("tenant", s.Tenant, "%v", err))
		}
	}
	if len(s.Incarnation) > MaxNameLen {
		return inv(fieldErr("incarnation", s.Incarnation, "longer than %d characters", MaxNameLen))
	}
	if s.Previous != nil && (s.Previous.Incarnation == "" || len(s.Previous.Incarnation) > MaxNameLen) {
		return inv(fieldErr("previous.incarnation", s.Previous.Incarnation, "want 1 to %d characters", MaxNameLen))
	}
	if len(s.Equipment) > MaxStatusEquipment {
		return inv(fieldErr("equipment", len(s.Equipment), "more than %d entries", MaxStatusEquipment))
	}
	for i, e := range s.Equipment {
		if err := CheckName(e); err != nil {
			return inv(fieldErr(fmt.Sprintf("equipment[%d]", i), e, "%v", err))
		}
	}
	return nil
}
