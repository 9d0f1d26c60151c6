package schemas

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"math"
	"strconv"
	"strings"
	"sync"
	"time"
	"unicode"
	"unicode/utf8"
)

// Limits bounds what Decode accepts. The zero value means DefaultLimits.
type Limits struct {
	MaxBytes   int // largest message, in bytes
	MaxSamples int // most samples in one envelope
	// Now, when set, makes Decode refuse (ReasonOutOfWindow) a sample stamped more
	// than MaxAge before it or MaxAhead after it (defaults DefaultMaxAge and
	// DefaultMaxAhead). A receiver sets it; the contract itself admits 1970 to 9999.
	Now      func() time.Time
	MaxAge   time.Duration
	MaxAhead time.Duration
}

// The timestamp window a receiver accepts by default: an agent's disk backlog of
// three months, and clocks an hour fast.
const (
	DefaultMaxAge   = 90 * 24 * time.Hour
	DefaultMaxAhead = time.Hour
)

// Window returns the timestamps l accepts at now: [from, to].
func (l Limits) Window(now time.Time) (from, to time.Time) {
	age, ahead := l.MaxAge, l.MaxAhead
	if age <= 0 {
		age = DefaultMaxAge
	}
	if ahead <= 0 {
		ahead = DefaultMaxAhead
	}
	return now.Add(-age), now.Add(ahead)
}

// KafkaRecordBytes is the largest Kafka record an envelope within l makes: the
// envelope at MaxBytes with 64 KiB for its key and headers, and never less than
// Kafka's default message.max.bytes (1 MiB). The bridge writes batches of at most
// this, the sink fetches at least this, and the topics' max.message.bytes must be at
// least this.
func (l Limits) KafkaRecordBytes() int { return max(1<<20, l.MaxBytes+64<<10) }

// DefaultLimits are the bounds Decode applies: 1 MiB and 10,000 samples.
var DefaultLimits = Limits{MaxBytes: 1 << 20, MaxSamples: 10_000}

// Decode parses and validates one envelope with DefaultLimits.
func Decode(data []byte) (*Envelope, error) { return DefaultLimits.Decode(data) }

// Decode parses and validates one envelope. Every error it returns is a
// *DecodeError whose Reason says why; a *FieldError inside names the field at fault.
// A valid envelope is returned only whole: there is no partial result.
func (l Limits) Decode(data []byte) (*Envelope, error) {
	if l.MaxBytes <= 0 {
		l.MaxBytes = DefaultLimits.MaxBytes
	}
	if l.MaxSamples <= 0 {
		l.MaxSamples = DefaultLimits.MaxSamples
	}
	if len(data) > l.MaxBytes {
		return nil, &DecodeError{ReasonTooLarge, fmt.Errorf("message of %d bytes exceeds the limit of %d bytes", len(data), l.MaxBytes)}
	}
	w := wireEnvelope{Samples: wireSamples{max: l.MaxSamples}}
	var err error
	if !parseFast(data, &w) {
		// Whatever the fast path does not handle, and every error: encoding/json.
		w.Samples.release()
		w = wireEnvelope{Samples: wireSamples{max: l.MaxSamples}}
		err = parseSlow(data, &w)
	}
	defer w.Samples.release()
	if tm := (*tooManySamples)(nil); errors.As(err, &tm) {
		return nil, &DecodeError{ReasonTooLarge, err}
	}
	if err != nil {
		if v, ok := peekVersion(data); ok && v != strconv.Itoa(Version) {
			return nil, &DecodeError{ReasonUnsupportedVersion, fmt.Errorf("version %s is not supported (this reader knows %d)", v, Version)}
		}
		return nil, &DecodeError{ReasonMalformed, describeJSONError(err)}
	}
	if w.Version != Version {
		if w.Version == 0 {
			return nil, &DecodeError{ReasonUnsupportedVersion, fieldErr("version", nil, "missing (want %d)", Version)}
		}
		return nil, &DecodeError{ReasonUnsupportedVersion, fmt.Errorf("version %d is not supported (this reader knows %d)", w.Version, Version)}
	}
	env := &Envelope{
		Version: w.Version, Tenant: w.Tenant, Site: w.Site, Area: w.Area, Line: w.Line,
		Equipment: w.Equipment, Agent: w.Agent, Incarnation: w.Incarnation, Samples: make([]Sample, len(w.Samples.list)),
	}
	if ValidTraceParent(w.TraceParent) {
		env.TraceParent = w.TraceParent
	}
	for i := range w.Samples.list {
		if err := w.Samples.list[i].toSample(i, &env.Samples[i]); err != nil {
			return nil, &DecodeError{ReasonInvalid, err}
		}
	}
	if err := env.Validate(); err != nil {
		return nil, &DecodeError{ReasonInvalid, err}
	}
	if l.Now != nil {
		now := l.Now()
		from, to := l.Window(now)
		for i := range env.Samples {
			ts := env.Samples[i].TS
			if ts.Before(from) || ts.After(to) {
				return nil, &DecodeError{ReasonOutOfWindow, fieldErr("samples["+strconv.Itoa(i)+"].ts", ts.Format(time.RFC3339Nano),
					"outside the accepted window %s to %s (%s back, %s ahead of the receiver's clock)",
					from.UTC().Format(time.RFC3339), to.UTC().Format(time.RFC3339), now.Sub(from), to.Sub(now))}
			}
		}
	}
	return env, nil
}

// Encode validates e and returns its JSON form.
func Encode(e *Envelope) ([]byte, error) {
	return AppendEncode(nil, e)
}

// AppendEncode validates e and appends its JSON form to dst.
func AppendEncode(dst []byte, e *Envelope) ([]byte, error) {
	if err := e.Validate(); err != nil {
		return dst, err
	}
	b := append(dst, `{"version":`...)
	b = strconv.AppendInt(b, int64(e.Version), 10)
	for _, f := range [...]struct{ k, v string }{
		{`,"tenant":`, e.Tenant}, {`,"site":`, e.Site}, {`,"area":`, e.Area},
		{`,"line":`, e.Line}, {`,"equipment":`, e.Equipment}, {`,"agent":`, e.Agent},
	} {
		b = append(b, f.k...)
		b = appendString(b, f.v)
	}
	if e.Incarnation != "" {
		b = append(b, `,"incarnation":`...)
		b = appendString(b, e.Incarnation)
	}
	if e.TraceParent != "" {
		b = append(b, `,"traceparent":`...)
		b = appendString(b, e.TraceParent)
	}
	b = append(b, `,"samples":[`...)
	for i := range e.Samples {
		if i > 0 {
			b = append(b, ',')
		}
		b = appendSample(b, &e.Samples[i])
	}
	return append(b, "]}"...), nil
}

// MarshalJSON implements json.Marshaler with Encode.
func (e *Envelope) MarshalJSON() ([]byte, error) { return Encode(e) }

// UnmarshalJSON implements json.Unmarshaler with Decode and DefaultLimits.
func (e *Envelope) UnmarshalJSON(b []byte) error {
	d, err := Decode(b)
	if err != nil {
		return err
	}
	*e = *d
	return nil
}

func appendSample(b []byte, s *Sample) []byte {
	b = append(b, `{"seq":`...)
	b = strconv.AppendUint(b, s.Seq, 10)
	b = append(b, `,"tag":`...)
	b = appendString(b, s.Tag)
	b = append(b, `,"role":"`...)
	b = append(b, s.Role.String()...)
	b = append(b, `","ts":"`...)
	b = s.TS.UTC().AppendFormat(b, time.RFC3339Nano)
	b = append(b, '"')
	switch s.Kind {
	case NumberValue:
		b = append(b, `,"value":`...)
		b = strconv.AppendFloat(b, s.Value, 'g', -1, 64)
	case TextValue:
		b = append(b, `,"text":`...)
		b = appendString(b, s.Text)
	}
	b = append(b, `,"quality":"`...)
	b = append(b, s.Quality.String()...)
	b = append(b, '"')
	switch s.Role {
	case RoleState:
		b = append(b, `,"state":"`...)
		b = append(b, s.State.String()...)
		b = append(b, `","reason":`...)
		b = strconv.AppendUint(b, uint64(s.Reason), 10)
	case RoleCounter:
		b = append(b, `,"counter":"`...)
		b = append(b, s.Counter.String()...)
		b = append(b, '"')
		if s.Wrap != 0 {
			b = append(b, `,"wrap":`...)
			b = strconv.AppendUint(b, s.Wrap, 10)
		}
	}
	return append(b, '}')
}

const hexDigits = "0123456789abcdef"

// appendString appends s as a JSON string. s is valid UTF-8 (Validate checks).
func appendString(b []byte, s string) []byte {
	b = append(b, '"')
	start := 0
	for i := 0; i < len(s); i++ {
		c := s[i]
		if c >= 0x20 && c != '"' && c != '\\' {
			continue
		}
		b = append(b, s[start:i]...)
		switch c {
		case '"', '\\':
			b = append(b, '\\', c)
		case '\n':
			b = append(b, '\\', 'n')
		case '\t':
			b = append(b, '\\', 't')
		case '\r':
			b = append(b, '\\', 'r')
		default:
			b = append(b, '\\', 'u', '0', '0', hexDigits[c>>4], hexDigits[c&0xf])
		}
		start = i + 1
	}
	b = append(b, s[start:]...)
	return append(b, '"')
}

// parseSlow fills w from data with encoding/json, unknown members refused.
func parseSlow(data []byte, w *wireEnvelope) error {
	dec := json.NewDecoder(bytes.NewReader(data))
	dec.DisallowUnknownFields()
	err := dec.Decode(w)
	if err == nil {
		if _, terr := dec.Token(); terr != io.EOF {
			err = errors.New("data after the envelope's closing brace")
		}
	}
	return err
}

type wireEnvelope struct {
	Version     int         `json:"version"`
	Tenant      string      `json:"tenant"`
	Site        string      `json:"site"`
	Area        string      `json:"area"`
	Line        string      `json:"line"`
	Equipment   string      `json:"equipment"`
	Agent       string      `json:"agent"`
	Incarnation string      `json:"incarnation"`
	TraceParent string      `json:"traceparent"`
	Samples     wireSamples `json:"samples"`
}

// wireSamples decodes the samples array one element at a time, so that an envelope
// holding more samples than the limit is refused when the first sample over it is
// met, before anything is allocated for the rest: a 1 MiB message of empty objects
// would otherwise become hundreds of thousands of decoded samples first.
type wireSamples struct {
	max    int
	list   []wireSample
	pooled *[]wireSample // the fast path's list comes from wirePool
}

// wirePool holds the fast path's sample lists between decodes: a list lives only
// while Decode builds the envelope's samples from it.
var wirePool sync.Pool

// release gives a pooled list back, cleared (it must not keep the last message's
// strings alive); lists longer than the default limit are left to the collector.
func (w *wireSamples) release() {
	if w.pooled == nil {
		return
	}
	if cap(w.list) <= DefaultLimits.MaxSamples {
		clear(w.list)
		*w.pooled = w.list[:0]
		wirePool.Put(w.pooled)
	}
	w.pooled, w.list = nil, nil
}

// tooManySamples is the error of an array longer than the limit.
type tooManySamples struct{ max int }

func (e *tooManySamples) Error() string {
	return fmt.Sprintf("envelope holds more than the limit of %d samples", e.max)
}

func (w *wireSamples) UnmarshalJSON(b []byte) error {
	if string(b) == "null" {
		return nil
	}
	dec := json.NewDecoder(bytes.NewReader(b))
	dec.DisallowUnknownFields()
	if tok, err := dec.Token(); err != nil || tok != json.Delim('[') {
		return &FieldError{Field: "samples", Msg: "want an array"}
	}
	for dec.More() {
		if len(w.list) >= w.max {
			return &tooManySamples{w.max}
		}
		w.list = append(w.list, wireSample{})
		if err := dec.Decode(&w.list[len(w.list)-1]); err != nil {
			var te *json.UnmarshalTypeError
			prefix := "samples[" + strconv.Itoa(len(w.list)-1) + "]"
			if errors.As(err, &te) {
				f := prefix
				if te.Field != "" {
					f += "." + te.Field
				}
				return &FieldError{Field: f, Msg: fmt.Sprintf("got a JSON %s, want %s", te.Value, jsonKind(te.Type.Kind().String()))}
			}
			return fmt.Errorf("%s: %s", prefix, strings.TrimPrefix(describeJSONError(err).Error(), "json: "))
		}
	}
	return nil
}

type wireSample struct {
	Seq  uint64   `json:"seq"`
	Tag  string   `json:"tag"`
	Role wireEnum `json:"role"`
	TS   string   `json:"ts"`
	// ts is TS parsed by the fast path (tsSet), which then leaves TS empty.
	ts      time.Time
	tsSet   bool
	Value   wireFloat `json:"value"`
	Text    *string   `json:"text"`
	Quality wireEnum  `json:"quality"`
	State   wireEnum  `json:"state"`
	Reason  uint32    `json:"reason"`
	Counter wireEnum  `json:"counter"`
	Wrap    uint64    `json:"wrap"`
}

// wireEnum keeps an enum's JSON literal without allocating in the common case:
// a known name is kept as the table's own string, and only an unknown literal is
// copied (to quote it in the error).
type wireEnum struct {
	name string
	raw  []byte
	set  bool
}

func (w *wireEnum) UnmarshalJSON(b []byte) error {
	if string(b) == "null" {
		return nil
	}
	w.set = true
	if len(b) >= 2 && b[0] == '"' && b[len(b)-1] == '"' {
		if n, ok := knownNames[string(b[1:len(b)-1])]; ok {
			w.name = n
			return nil
		}
	}
	w.raw = bytes.Clone(b)
	return nil
}

// knownNames holds every enum name, keyed by itself.
var knownNames = func() map[string]string {
	m := map[string]string{}
	for _, list := range [][]string{roleNames[:], qualityNames[:], stateNames[:], counterNames[:]} {
		for _, n := range list {
			if n != "" {
				m[n] = n
			}
		}
	}
	return m
}()

// wireFloat is a JSON number that remembers whether it was present.
type wireFloat struct {
	v        float64
	set      bool
	bad      []byte // the literal, when it is not a number a float64 holds
	overflow bool   // the literal is a number beyond float64's range
}

func (w *wireFloat) UnmarshalJSON(b []byte) error {
	if string(b) == "null" {
		return nil
	}
	w.set = true
	v, err := strconv.ParseFloat(string(b), 64)
	if err != nil || len(b) == 0 || b[0] == '"' {
		w.bad = bytes.Clone(b)
		w.overflow = errors.Is(err, strconv.ErrRange)
		return nil
	}
	w.v = v
	return nil
}

func (w *wireSample) toSample(i int, s *Sample) error {
	field := func(name string) string { return "samples[" + strconv.Itoa(i) + "]." + name }
	s.Seq, s.Tag, s.Reason, s.Wrap = w.Seq, w.Tag, w.Reason, w.Wrap

	var err error
	if !w.Role.set {
		return fieldErr(field("role"), nil, "missing")
	}
	if s.Role, err = parseEnum(w.Role, ParseRole); err != nil {
		return fieldErr(field("role"), nil, "%v", err)
	}
	if !w.Quality.set {
		return fieldErr(field("quality"), nil, "missing")
	}
	if s.Quality, err = parseEnum(w.Quality, ParseQuality); err != nil {
		return fieldErr(field("quality"), nil, "%v", err)
	}
	if w.State.set {
		if s.Role != RoleState {
			return fieldErr(field("state"), nil, "only allowed when role is state, not %s", s.Role)
		}
		if s.State, err = parseEnum(w.State, ParseStateCategory); err != nil {
			return fieldErr(field("state"), nil, "%v", err)
		}
	} else if s.Role == RoleState {
		return fieldErr(field("state"), nil, "missing (required when role is state)")
	}
	if w.Counter.set {
		if s.Role != RoleCounter {
			return fieldErr(field("counter"), nil, "only allowed when role is counter, not %s", s.Role)
		}
		if s.Counter, err = parseEnum(w.Counter, ParseCounterKind); err != nil {
			return fieldErr(field("counter"), nil, "%v", err)
		}
	} else if s.Role == RoleCounter {
		return fieldErr(field("counter"), nil, "missing (required when role is counter)")
	}
	if w.Reason != 0 && s.Role != RoleState {
		return fieldErr(field("reason"), w.Reason, "only allowed when role is state, not %s", s.Role)
	}
	if w.Wrap != 0 && s.Role != RoleCounter {
		return fieldErr(field("wrap"), w.Wrap, "only allowed when role is counter, not %s", s.Role)
	}

	switch {
	case w.tsSet:
		s.TS = w.ts
	case w.TS == "":
		return fieldErr(field("ts"), nil, "missing")
	default:
		if s.TS, err = time.Parse(time.RFC3339Nano, w.TS); err != nil {
			return fieldErr(field("ts"), w.TS, "not an RFC 3339 date-time")
		}
	}
	s.TS = s.TS.UTC()

	switch {
	case w.Value.overflow:
		return &FieldError{Field: field("value"), Value: string(w.Value.bad), Msg: "beyond the range of a float64 (must be a finite number)"}
	case w.Value.bad != nil:
		return &FieldError{Field: field("value"), Value: string(w.Value.bad), Msg: "not a JSON number"}
	case w.Value.set && w.Text != nil:
		return fieldErr(field("text"), *w.Text, "a sample has a value or a text, not both")
	case w.Value.set:
		s.Kind, s.Value = NumberValue, w.Value.v
	case w.Text != nil:
		s.Kind, s.Text = TextValue, *w.Text
	}
	return nil
}

func parseEnum[T any](w wireEnum, parse func(string) (T, error)) (T, error) {
	if w.raw == nil {
		return parse(w.name)
	}
	var name string
	if err := json.Unmarshal(w.raw, &name); err != nil {
		var zero T
		return zero, fmt.Errorf("%s is not a string", w.raw)
	}
	return parse(name)
}

// peekVersion finds the top-level version field of data, leniently, so that a
// message of another version is classified as such even when its shape is unknown.
func peekVersion(data []byte) (string, bool) {
	var v struct {
		Version json.RawMessage `json:"version"`
	}
	if json.Unmarshal(data, &v) != nil || len(v.Version) == 0 {
		return "", false
	}
	return string(v.Version), true
}

// describeJSONError turns encoding/json's errors into ones that name the field.
func describeJSONError(err error) error {
	var te *json.UnmarshalTypeError
	var se *json.SyntaxError
	switch {
	case errors.As(err, &te):
		f := te.Field
		if f == "" {
			f = "(envelope)"
		}
		return &FieldError{Field: f, Msg: fmt.Sprintf("got a JSON %s, want %s (at byte %d)", te.Value, jsonKind(te.Type.Kind().String()), te.Offset)}
	case errors.As(err, &se):
		return fmt.Errorf("not valid JSON at byte %d: %v", se.Offset, se)
	case errors.Is(err, io.EOF):
		return errors.New("empty message")
	case errors.Is(err, io.ErrUnexpectedEOF):
		return errors.New("not valid JSON: message ends early")
	}
	return err
}

func jsonKind(goKind string) string {
	switch goKind {
	case "string":
		return "a string"
	case "slice":
		return "an array"
	case "struct":
		return "an object"
	case "int", "int64", "uint64", "uint32", "float64":
		return "a number (" + goKind + ")"
	}
	return goKind
}

// Validate checks every rule of the contract that a Go value can break, and returns
// a *FieldError naming the first field at fault.
func (e *Envelope) Validate() error {
	if e.Version != Version {
		return fieldErr("version", e.Version, "want %d", Version)
	}
	if err := e.Path().Validate(); err != nil {
		return err
	}
	if err := CheckName(e.Agent); err != nil {
		return fieldErr("agent", e.Agent, "%v", err)
	}
	if e.Incarnation != "" {
		if err := CheckName(e.Incarnation); err != nil {
			return fieldErr("incarnation", e.Incarnation, "%v", err)
		}
	}
	if e.TraceParent != "" && !ValidTraceParent(e.TraceParent) {
		return fieldErr("traceparent", e.TraceParent, "want a W3C traceparent: 00-<32 hex digits>-<16 hex digits>-<2 hex digits>, lower case, ids not all zero")
	}
	if len(e.Samples) == 0 {
		return fieldErr("samples", nil, "an envelope holds at least one sample")
	}
	for i := range e.Samples {
		s := &e.Samples[i]
		if err := s.validate(i); err != nil {
			return err
		}
		if i > 0 && s.Seq <= e.Samples[i-1].Seq {
			return fieldErr("samples["+strconv.Itoa(i)+"].seq", s.Seq, "must be greater than the previous sample's seq %d", e.Samples[i-1].Seq)
		}
	}
	return nil
}

// MaxTagLen bounds a tag name, in bytes.
const MaxTagLen = 256

// MaxTextLen bounds a text value, in bytes.
const MaxTextLen = 4096

// maxExactCount is the largest integer a float64 (and a JSON reader in any
// language) holds exactly.
const maxExactCount = 1 << 53

var (
	minTS = time.Date(1970, 1, 1, 0, 0, 0, 0, time.UTC)
	maxTS = time.Date(9999, 12, 31, 23, 59, 59, 0, time.UTC)
)

// MaxSeq is the largest seq: 2^63 - 1, what PostgreSQL's bigint (and Java's long,
// for consumers in other languages) holds.
const MaxSeq = math.MaxInt64

func (s *Sample) validate(i int) error {
	field := func(name string) string { return "samples[" + strconv.Itoa(i) + "]." + name }
	if s.Seq == 0 {
		return fieldErr(field("seq"), nil, "missing or 0 (seq starts at 1)")
	}
	if s.Seq > MaxSeq {
		return fieldErr(field("seq"), s.Seq, "above %d, the largest seq a database's signed 64-bit integer keeps", uint64(MaxSeq))
	}
	if s.Tag == "" {
		return fieldErr(field("tag"), nil, "missing or empty")
	}
	if len(s.Tag) > MaxTagLen || !utf8.ValidString(s.Tag) {
		return fieldErr(field("tag"), s.Tag, "must be valid UTF-8 of at most %d bytes", MaxTagLen)
	}
	if i := strings.IndexFunc(s.Tag, unicode.IsControl); i >= 0 {
		return fieldErr(field("tag"), s.Tag, "control character %U at byte %d not allowed", []rune(s.Tag[i:])[0], i)
	}
	if s.TS.Before(minTS) || s.TS.After(maxTS) {
		return fieldErr(field("ts"), s.TS.Format(time.RFC3339Nano), "outside 1970..9999")
	}
	if s.Quality < QualityGood || s.Quality > QualityBad {
		return fieldErr(field("quality"), s.Quality.String(), "unknown quality")
	}
	switch s.Kind {
	case NoValue:
		if s.Quality != QualityBad {
			return fieldErr(field("value"), nil, "missing (only a sample of quality bad may have no value)")
		}
	case NumberValue:
		if math.IsNaN(s.Value) || math.IsInf(s.Value, 0) {
			return fieldErr(field("value"), s.Value, "must be a finite number")
		}
	case TextValue:
		if s.Role != RoleMeasurement && s.Role != RoleProduct {
			return fieldErr(field("text"), s.Text, "only a measurement or a product may have a text value, not a %s", s.Role)
		}
		if len(s.Text) > MaxTextLen || !utf8.ValidString(s.Text) {
			return fieldErr(field("text"), nil, "must be valid UTF-8 of at most %d bytes", MaxTextLen)
		}
	default:
		return fieldErr(field("value"), nil, "unknown value kind %d", s.Kind)
	}
	switch s.Role {
	case RoleMeasurement:
		if s.State != 0 || s.Reason != 0 || s.Counter != 0 || s.Wrap != 0 {
			return fieldErr(field("role"), "measurement", "a measurement has no state, reason, counter or wrap")
		}
	case RoleState:
		if int(s.State) >= len(stateNames) {
			return fieldErr(field("state"), s.State.String(), "unknown state category")
		}
		if s.Counter != 0 || s.Wrap != 0 {
			return fieldErr(field("role"), "state", "a state sample has no counter or wrap")
		}
		if s.Kind == NumberValue && s.Value != math.Trunc(s.Value) {
			return fieldErr(field("value"), s.Value, "a state code must be an integer")
		}
	case RoleCounter:
		if s.Counter < CounterTotal || s.Counter > CounterScrap {
			return fieldErr(field("counter"), s.Counter.String(), "unknown counter kind")
		}
		if s.State != 0 || s.Reason != 0 {
			return fieldErr(field("role"), "counter", "a counter has no state or reason")
		}
		if s.Kind == NumberValue && (s.Value < 0 || s.Value != math.Trunc(s.Value) || s.Value > maxExactCount) {
			return fieldErr(field("value"), s.Value, "a counter must be a whole number from 0 to 2^53")
		}
		if s.Wrap > maxExactCount {
			return fieldErr(field("wrap"), s.Wrap, "must be at most 2^53")
		}
		if s.Wrap != 0 && s.Kind == NumberValue && s.Value >= float64(s.Wrap) {
			return fieldErr(field("value"), s.Value, "must be below the counter's wrap value %d", s.Wrap)
		}
	case RoleProduct:
		if s.State != 0 || s.Reason != 0 || s.Counter != 0 || s.Wrap != 0 {
			return fieldErr(field("role"), "product", "a product sample has no state, reason, counter or wrap")
		}
		if s.Kind == NumberValue {
			return fieldErr(field("value"), s.Value, "a product is named by a text (its code), not a number")
		}
		if s.Kind == TextValue && s.Text != "" && CheckName(s.Text) != nil {
			return fieldErr(field("text"), s.Text, "a product code: %v", CheckName(s.Text))
		}
	default:
		return fieldErr(field("role"), s.Role.String(), "unknown role")
	}
	return nil
}

// ValidTraceParent says whether s is a W3C traceparent of version 00: "00-" 32 lower-case
// hex digits (the trace id, not all zero) "-" 16 (the parent span id, not all zero)
// "-" 2 (the flags).
func ValidTraceParent(s string) bool {
	if len(s) != 55 || s[:3] != "00-" || s[35] != '-' || s[52] != '-' {
		return false
	}
	hex := func(f string) (ok, zero bool) {
		zero = true
		for i := 0; i < len(f); i++ {
			c := f[i]
			if (c < '0' || c > '9') && (c < 'a' || c > 'f') {
				return false, false
			}
			zero = zero && c == '0'
		}
		return true, zero
	}
	okT, zeroT := hex(s[3:35])
	okS, zeroS := hex(s[36:52])
	okF, _ := hex(s[53:55])
	return okT && okS && okF && !zeroT && !zeroS
}

// PeekTraceParent returns the traceparent of an envelope this package encoded (where
// Encode puts it: a top-level member before the samples), without decoding it: "" if
// it has none. A string inside the envelope cannot fake it (its quotes are escaped).
func PeekTraceParent(payload []byte) string {
	const key = `,"traceparent":"`
	i := bytes.Index(payload, []byte(key))
	if i < 0 || len(payload) < i+len(key)+56 {
		return ""
	}
	tp := string(payload[i+len(key) : i+len(key)+55])
	if payload[i+len(key)+55] != '"' || !ValidTraceParent(tp) {
		return ""
	}
	return tp
}
