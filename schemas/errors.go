package schemas

import (
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"time"
	"unicode/utf8"
)

// Reason classifies why a message was refused. It is the dead-letter reason on
// Kafka and the label of the dead-letter counters.
type Reason string

const (
	// ReasonTooLarge: the message is larger than the decoder's byte limit or holds
	// more samples than its sample limit.
	ReasonTooLarge Reason = "too_large"
	// ReasonMalformed: not JSON, or JSON of the wrong shape (a missing object, a
	// string where a number belongs, an unknown field).
	ReasonMalformed Reason = "malformed"
	// ReasonUnsupportedVersion: the version field is missing or not Version.
	ReasonUnsupportedVersion Reason = "unsupported_version"
	// ReasonInvalid: well-formed, but a field breaks a rule (empty tag, NaN,
	// unknown role, a counter below zero...).
	ReasonInvalid Reason = "invalid"
	// ReasonTopicMismatch: the MQTT topic and the envelope name different equipment.
	ReasonTopicMismatch Reason = "topic_mismatch"
	// ReasonRejectedByDatabase: PostgreSQL refused the row for good (not a
	// transient failure).
	ReasonRejectedByDatabase Reason = "rejected_by_database"
	// ReasonOutOfWindow: a sample's timestamp is further in the past or the future
	// than the receiver accepts (Limits.MaxAge, Limits.MaxAhead): a PLC clock gone
	// wrong, which would otherwise make a partition for every day it names.
	ReasonOutOfWindow Reason = "ts_out_of_window"
	// ReasonIdentityConflict: an envelope has the identity (tenant, agent,
	// incarnation, first seq) of one already stored but not its content (sample
	// count or last seq): not a resend but a different envelope. The stored one is
	// kept; this one is set aside for an operator.
	ReasonIdentityConflict Reason = "identity_conflict"
)

// Reasons lists every Reason, so that counters can be created for each up front.
func Reasons() []Reason {
	return []Reason{ReasonTooLarge, ReasonMalformed, ReasonUnsupportedVersion, ReasonInvalid, ReasonTopicMismatch, ReasonRejectedByDatabase, ReasonOutOfWindow, ReasonIdentityConflict}
}

// DecodeError is what Decode returns for bytes it cannot accept.
type DecodeError struct {
	Reason Reason
	Err    error
}

func (e *DecodeError) Error() string { return string(e.Reason) + ": " + e.Err.Error() }
func (e *DecodeError) Unwrap() error { return e.Err }

// ReasonOf returns the Reason of the *DecodeError in err's chain, or
// ReasonMalformed when there is none.
func ReasonOf(err error) Reason {
	var de *DecodeError
	if errors.As(err, &de) {
		return de.Reason
	}
	return ReasonMalformed
}

// FieldError names the field at fault and quotes its value.
type FieldError struct {
	Field string // path such as "samples[3].ts"
	Value string // the offending value, as it appeared (quoted when a string)
	Msg   string
}

func (e *FieldError) Error() string {
	if e.Value == "" {
		return e.Field + ": " + e.Msg
	}
	return e.Field + " = " + e.Value + ": " + e.Msg
}

func fieldErr(field string, value any, format string, args ...any) *FieldError {
	var v string
	switch x := value.(type) {
	case nil:
	case string:
		if x != "" {
			v = fmt.Sprintf("%q", x)
		}
	default:
		v = fmt.Sprint(x)
	}
	return &FieldError{Field: field, Value: v, Msg: fmt.Sprintf(format, args...)}
}

// DeadLetter is the JSON value of a record on KafkaDeadLetter: what was refused, why,
// and where it came from. Payload holds the original bytes (base64 in JSON), cut to
// a configured size so that a dead letter always fits the topic: PayloadBytes and
// PayloadSHA256 are those of the original, whole, and Truncated says it was cut.
type DeadLetter struct {
	Reason        Reason    `json:"reason"`
	Error         string    `json:"error"`
	Source        string    `json:"source"` // "mqtt:<topic>" or "kafka:<topic>/<partition>@<offset>"
	ReceivedAt    time.Time `json:"received_at"`
	Payload       []byte    `json:"payload"`
	PayloadBytes  int       `json:"payload_bytes"`
	PayloadSHA256 string    `json:"payload_sha256"`
	Truncated     bool      `json:"truncated,omitempty"`
}

// Bounds of a dead letter's parts besides the payload.
const (
	MaxDeadLetterError  = 4096 // bytes of the error text
	MaxDeadLetterSource = 1024 // bytes of the source
	// DefaultDeadLetterPayload is how much of a refused message a dead letter keeps.
	DefaultDeadLetterPayload = 256 << 10
)

// NewDeadLetter builds a dead letter for payload refused for err, keeping at most
// maxPayload bytes of it (DefaultDeadLetterPayload when maxPayload <= 0) and the
// error and source cut to their bounds, so that its JSON never exceeds
// DeadLetterBound(maxPayload).
func NewDeadLetter(err error, source string, at time.Time, payload []byte, maxPayload int) DeadLetter {
	if maxPayload <= 0 {
		maxPayload = DefaultDeadLetterPayload
	}
	sum := sha256.Sum256(payload)
	d := DeadLetter{Reason: ReasonOf(err), Error: cut(err.Error(), MaxDeadLetterError), Source: cut(source, MaxDeadLetterSource),
		ReceivedAt: at.UTC(), Payload: payload, PayloadBytes: len(payload), PayloadSHA256: hex.EncodeToString(sum[:])}
	if len(payload) > maxPayload {
		d.Payload, d.Truncated = payload[:maxPayload], true
	}
	return d
}

// DeadLetterBound is the largest JSON a dead letter keeping maxPayload bytes of
// payload encodes to: base64 of the payload, the error and source escaped at worst
// six bytes a byte (\u00XX), and the fixed fields.
func DeadLetterBound(maxPayload int) int {
	if maxPayload <= 0 {
		maxPayload = DefaultDeadLetterPayload
	}
	return (maxPayload+2)/3*4 + 6*(MaxDeadLetterError+MaxDeadLetterSource) + 512
}

// cut shortens s to at most n bytes on a rune boundary.
func cut(s string, n int) string {
	if len(s) <= n {
		return s
	}
	for n > 0 && !utf8.RuneStart(s[n]) {
		n--
	}
	return s[:n]
}
