// Package source holds what every source driver (Modbus, OPC UA) hands the agent:
// readings of the tags of one device, by index into that device's tag list.
package source

import "time"

// Value is a decoded reading: a number, or a text for string tags.
type Value struct {
	Num    float64
	Text   string
	IsText bool
	// Wrap is where the value's type wraps to 0 when it is an unsigned counter type
	// (UInt16: 65536, UInt32: 2^32), 0 otherwise: a counter tag without a configured
	// wrap takes it, as a Modbus counter takes its register type's.
	Wrap uint64
}

// Quality of a reading, as the source judged it.
type Quality uint8

const (
	Good Quality = iota
	Uncertain
	Bad // the read failed: Value is meaningless
)

// Reading is one tag's outcome of one read, poll or notification.
type Reading struct {
	Tag     int // index in the device's tags
	TS      time.Time
	Value   Value
	Quality Quality
	Err     error // why the quality is Bad (or Uncertain), when known
}
