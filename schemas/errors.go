package schemas

import (
	"errors"
	"fmt"
	"time"
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
)

// Reasons lists every Reason, so that counters can be created for each up front.
func Reasons() []Reason {
	return []Reason{ReasonTooLarge, ReasonMalformed, ReasonUnsupportedVersion, ReasonInvalid, ReasonTopicMismatch, ReasonRejectedByDatabase}
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
// and where it came from. Payload holds the original bytes (base64 in JSON).
type DeadLetter struct {
	Reason     Reason    `json:"reason"`
	Error      string    `json:"error"`
	Source     string    `json:"source"` // "mqtt:<topic>" or "kafka:<topic>/<partition>@<offset>"
	ReceivedAt time.Time `json:"received_at"`
	Payload    []byte    `json:"payload"`
}
