package schemas

import (
	"fmt"
	"time"
)

// Version is the envelope schema version this package reads and writes. A message
// with any other version is refused with ReasonUnsupportedVersion.
const Version = 1

// Role says what a tag means to Takt. The agent's configuration declares it per tag.
type Role uint8

const (
	// RoleMeasurement is an analogue or informational value (temperature, speed...).
	RoleMeasurement Role = iota + 1
	// RoleState is a machine state: Value holds the PLC's code, State and Reason its
	// meaning in Takt's categories.
	RoleState
	// RoleCounter is a cumulative part count (total, good or scrap). It can reset or
	// wrap; consumers turn it into increments.
	RoleCounter
	// RoleProduct names, in Text, the product (its code) the equipment makes from the
	// sample's time on, until the next product sample; an empty text means none (a
	// changeover). The OEE of the time takes that product's ideal cycle time.
	RoleProduct
)

var roleNames = [...]string{RoleMeasurement: "measurement", RoleState: "state", RoleCounter: "counter", RoleProduct: "product"}

func (r Role) String() string {
	if int(r) < len(roleNames) && roleNames[r] != "" {
		return roleNames[r]
	}
	return fmt.Sprintf("Role(%d)", uint8(r))
}

// ParseRole returns the Role named s ("measurement", "state", "counter" or "product").
func ParseRole(s string) (Role, error) {
	for i, n := range roleNames {
		if n != "" && n == s {
			return Role(i), nil
		}
	}
	return 0, fmt.Errorf("unknown role %q (want measurement, state or counter)", s)
}

// Quality is the trust in a sample's value, in the spirit of OPC UA status codes.
type Quality uint8

const (
	QualityGood Quality = iota + 1
	QualityUncertain
	// QualityBad marks a failed read: the sample may carry no value at all, and a
	// consumer must never treat a bad sample's value as a reading.
	QualityBad
)

var qualityNames = [...]string{QualityGood: "good", QualityUncertain: "uncertain", QualityBad: "bad"}

func (q Quality) String() string {
	if int(q) < len(qualityNames) && qualityNames[q] != "" {
		return qualityNames[q]
	}
	return fmt.Sprintf("Quality(%d)", uint8(q))
}

// ParseQuality returns the Quality named s ("good", "uncertain" or "bad").
func ParseQuality(s string) (Quality, error) {
	for i, n := range qualityNames {
		if n != "" && n == s {
			return Quality(i), nil
		}
	}
	return 0, fmt.Errorf("unknown quality %q (want good, uncertain or bad)", s)
}

// StateCategory is Takt's classification of a machine state, the basis of the OEE
// time model. Its numeric value is its stable code, stored in the database.
type StateCategory uint8

const (
	// StateUnknown is time about which nothing is known (no data, unmapped code).
	StateUnknown StateCategory = 0
	// StateRunning: producing.
	StateRunning StateCategory = 1
	// StateSetup: changeover or setup, planned time lost to availability.
	StateSetup StateCategory = 2
	// StateStoppedUnplanned: breakdown or unplanned stop (micro-stops included).
	StateStoppedUnplanned StateCategory = 3
	// StateIdle: ready but starved or blocked by its neighbours.
	StateIdle StateCategory = 4
	// StatePlannedDown: planned stop (break, planned maintenance): not planned time.
	StatePlannedDown StateCategory = 5
	// StateNotScheduled: no production scheduled.
	StateNotScheduled StateCategory = 6
)

var stateNames = [...]string{
	StateUnknown:          "UNKNOWN",
	StateRunning:          "RUNNING",
	StateSetup:            "SETUP",
	StateStoppedUnplanned: "STOPPED_UNPLANNED",
	StateIdle:             "IDLE",
	StatePlannedDown:      "PLANNED_DOWN",
	StateNotScheduled:     "NOT_SCHEDULED",
}

// StateCategories lists every category in code order.
func StateCategories() []StateCategory {
	out := make([]StateCategory, len(stateNames))
	for i := range stateNames {
		out[i] = StateCategory(i)
	}
	return out
}

func (c StateCategory) String() string {
	if int(c) < len(stateNames) {
		return stateNames[c]
	}
	return fmt.Sprintf("StateCategory(%d)", uint8(c))
}

// ParseStateCategory returns the category named s, such as "RUNNING".
func ParseStateCategory(s string) (StateCategory, error) {
	for i, n := range stateNames {
		if n == s {
			return StateCategory(i), nil
		}
	}
	return 0, fmt.Errorf("unknown state category %q (want one of RUNNING, SETUP, STOPPED_UNPLANNED, IDLE, PLANNED_DOWN, NOT_SCHEDULED, UNKNOWN)", s)
}

// CounterKind says which part count a counter tag holds.
type CounterKind uint8

const (
	CounterTotal CounterKind = iota + 1
	CounterGood
	CounterScrap
)

var counterNames = [...]string{CounterTotal: "total", CounterGood: "good", CounterScrap: "scrap"}

func (k CounterKind) String() string {
	if int(k) < len(counterNames) && counterNames[k] != "" {
		return counterNames[k]
	}
	return fmt.Sprintf("CounterKind(%d)", uint8(k))
}

// ParseCounterKind returns the CounterKind named s ("total", "good" or "scrap").
func ParseCounterKind(s string) (CounterKind, error) {
	for i, n := range counterNames {
		if n != "" && n == s {
			return CounterKind(i), nil
		}
	}
	return 0, fmt.Errorf("unknown counter kind %q (want total, good or scrap)", s)
}

// ValueKind says which of a sample's value fields is meaningful.
type ValueKind uint8

const (
	// NoValue: the read failed; only allowed with QualityBad.
	NoValue ValueKind = iota
	// NumberValue: Value holds the reading (booleans are 0 and 1).
	NumberValue
	// TextValue: Text holds the reading (string tags); only for measurements.
	TextValue
)

// Sample is one value of one tag of one equipment at one instant. The equipment and
// the agent are the enclosing Envelope's.
type Sample struct {
	Seq     uint64    // agent-wide sequence number, from 1, survives restarts
	Tag     string    // tag name, unique within the equipment
	Role    Role      // what the tag means
	TS      time.Time // when the value was true (source or server timestamp)
	Kind    ValueKind // which of Value and Text is set
	Value   float64   // numeric reading; finite
	Text    string    // text reading, when Kind is TextValue
	Quality Quality

	// Role state only.
	State  StateCategory // the category the PLC code maps to
	Reason uint32        // reason code within the category (0 = none given)

	// Role counter only.
	Counter CounterKind // which count
	Wrap    uint64      // the counter wraps to 0 at this value; 0 if unknown
}

// Envelope is one message: many samples of one equipment, read by one agent.
type Envelope struct {
	Version   int
	Tenant    string
	Site      string
	Area      string
	Line      string
	Equipment string
	Agent     string
	// Incarnation names the run of the agent that built the envelope (optional; a
	// new one at every start of the agent). With Tenant, Agent and the first
	// sample's Seq it is the envelope's identity, by which receivers drop
	// duplicates: an agent whose seq starts over (a re-imaged gateway, a lost
	// buffer) makes new identities, not duplicates of its old envelopes. An
	// envelope is resent only whole and unchanged, so its incarnation too.
	Incarnation string
	// TraceParent is the W3C trace context (traceparent, version 00) of the agent's span
	// that built the envelope (optional; only when the agent traces). Readers continue
	// the trace from it; one that is malformed is ignored on decoding, as W3C Trace
	// Context asks, never a reason to refuse the envelope.
	TraceParent string
	Samples     []Sample
}

// Path returns where the envelope's equipment sits in the namespace.
func (e *Envelope) Path() Path {
	return Path{Tenant: e.Tenant, Site: e.Site, Area: e.Area, Line: e.Line, Equipment: e.Equipment}
}
