package schemas

import (
	"bytes"
	"math"
	"strconv"
	"time"
	"unicode/utf8"
)

// The fast path of Decode: a scanner for envelopes as they come (what Encode writes,
// in any member order and with any whitespace), with no reflection and few
// allocations. It accepts only what it is sure of: at the first thing it does not
// handle (an unknown or repeated member, a key in other case, a string escape, null,
// a number a field's type would refuse, invalid UTF-8, more samples than the limit,
// anything after the envelope), it gives up and Decode takes the encoding/json path,
// which says exactly what is wrong. So both paths fill the same wireEnvelope for any
// input the fast one accepts (FuzzFastPathAgrees checks it), and every error comes
// from the one path that describes errors.

type scanner struct {
	b []byte
	i int
}

func (s *scanner) ws() {
	for s.i < len(s.b) {
		switch s.b[s.i] {
		case ' ', '\t', '\n', '\r':
			s.i++
		default:
			return
		}
	}
}

// byte consumes c (after whitespace).
func (s *scanner) byte(c byte) bool {
	s.ws()
	if s.i < len(s.b) && s.b[s.i] == c {
		s.i++
		return true
	}
	return false
}

// str reads a string without escapes or control characters, in valid UTF-8, and
// returns its bytes (a slice of the input).
func (s *scanner) str() ([]byte, bool) {
	s.ws()
	if s.i >= len(s.b) || s.b[s.i] != '"' {
		return nil, false
	}
	start := s.i + 1
	ascii := true
	for j := start; j < len(s.b); j++ {
		c := s.b[j]
		switch {
		case c == '"':
			s.i = j + 1
			v := s.b[start:j]
			if !ascii && !utf8.Valid(v) {
				return nil, false
			}
			return v, true
		case c == '\\' || c < 0x20:
			return nil, false
		case c >= 0x80:
			ascii = false
		}
	}
	return nil, false
}

// number reads a JSON number literal (strict grammar) and returns it.
func (s *scanner) number() ([]byte, bool) {
	s.ws()
	b, i := s.b, s.i
	start := i
	if i < len(b) && b[i] == '-' {
		i++
	}
	switch {
	case i < len(b) && b[i] == '0':
		i++
	case i < len(b) && b[i] >= '1' && b[i] <= '9':
		for i < len(b) && b[i] >= '0' && b[i] <= '9' {
			i++
		}
	default:
		return nil, false
	}
	if i < len(b) && b[i] == '.' {
		i++
		d := i
		for i < len(b) && b[i] >= '0' && b[i] <= '9' {
			i++
		}
		if i == d {
			return nil, false
		}
	}
	if i < len(b) && (b[i] == 'e' || b[i] == 'E') {
		i++
		if i < len(b) && (b[i] == '+' || b[i] == '-') {
			i++
		}
		d := i
		for i < len(b) && b[i] >= '0' && b[i] <= '9' {
			i++
		}
		if i == d {
			return nil, false
		}
	}
	s.i = i
	return b[start:i], true
}

// uint reads an unsigned integer of at most max: digits only, as encoding/json
// accepts for an unsigned field.
func (s *scanner) uint(max uint64) (uint64, bool) {
	lit, ok := s.number()
	if !ok || len(lit) == 0 || lit[0] == '-' {
		return 0, false
	}
	var v uint64
	for _, c := range lit {
		if c < '0' || c > '9' {
			return 0, false
		}
		d := uint64(c - '0')
		if v > (max-d)/10 {
			return 0, false
		}
		v = v*10 + d
	}
	return v, true
}

// members calls f with each member's key of an object, f reading the value; it
// gives up on a key seen twice (encoding/json keeps the last; the slow path decides).
func (s *scanner) members(f func(key []byte) bool) bool {
	if !s.byte('{') {
		return false
	}
	if s.byte('}') {
		return true
	}
	var seen [16][]byte
	n := 0
	for {
		key, ok := s.str()
		if !ok || !s.byte(':') {
			return false
		}
		for _, k := range seen[:n] {
			if bytes.Equal(k, key) {
				return false
			}
		}
		if n < len(seen) {
			seen[n] = key
			n++
		} else {
			return false
		}
		if !f(key) {
			return false
		}
		if s.byte(',') {
			continue
		}
		return s.byte('}')
	}
}

func (s *scanner) stringField(dst *string) bool {
	v, ok := s.str()
	if ok {
		*dst = string(v)
	}
	return ok
}

func (s *scanner) enum(dst *wireEnum) bool {
	v, ok := s.str()
	if !ok {
		return false
	}
	dst.set = true
	if n, known := knownNames[string(v)]; known {
		dst.name = n
		return true
	}
	// Unknown names keep their literal, quotes included, as the slow path does.
	dst.raw = append([]byte(nil), s.b[s.i-len(v)-2:s.i]...)
	return true
}

// parseFast fills w from data, or reports that Decode must take the slow path.
func parseFast(data []byte, w *wireEnvelope) bool {
	s := scanner{b: data}
	ok := s.members(func(key []byte) bool {
		switch string(key) {
		case "version":
			v, ok := s.uint(math.MaxInt32)
			w.Version = int(v)
			return ok
		case "tenant":
			return s.stringField(&w.Tenant)
		case "site":
			return s.stringField(&w.Site)
		case "area":
			return s.stringField(&w.Area)
		case "line":
			return s.stringField(&w.Line)
		case "equipment":
			return s.stringField(&w.Equipment)
		case "agent":
			return s.stringField(&w.Agent)
		case "incarnation":
			return s.stringField(&w.Incarnation)
		case "traceparent":
			return s.stringField(&w.TraceParent)
		case "samples":
			return s.samples(&w.Samples)
		}
		return false
	})
	if !ok {
		return false
	}
	s.ws()
	return s.i == len(s.b)
}

func (s *scanner) samples(w *wireSamples) bool {
	if !s.byte('[') {
		return false
	}
	if s.byte(']') {
		return true // an empty list, as the slow path leaves it: nil (Validate refuses it)
	}
	if w.list == nil {
		// A list from the pool (Decode gives it back), with room for what the message
		// can hold (a sample is 60 bytes at least), so that it is not copied as it grows.
		want := min(w.max, (len(s.b)-s.i)/60+1)
		p, _ := wirePool.Get().(*[]wireSample)
		if p == nil || cap(*p) < want {
			l := make([]wireSample, 0, want)
			p = &l
		}
		w.pooled, w.list = p, (*p)[:0]
	}
	for {
		if len(w.list) >= w.max {
			return false
		}
		w.list = append(w.list, wireSample{})
		if !s.sample(&w.list[len(w.list)-1]) {
			return false
		}
		if s.byte(',') {
			continue
		}
		return s.byte(']')
	}
}

func (s *scanner) sample(w *wireSample) bool {
	return s.members(func(key []byte) bool {
		var ok bool
		switch string(key) {
		case "seq":
			w.Seq, ok = s.uint(math.MaxUint64)
		case "tag":
			ok = s.stringField(&w.Tag)
		case "role":
			ok = s.enum(&w.Role)
		case "ts":
			var v []byte
			if v, ok = s.str(); ok {
				if w.ts, w.tsSet = parseTimestamp(v); !w.tsSet {
					w.TS = string(v) // not the usual form: time.Parse decides
				}
			}
		case "value":
			var lit []byte
			if lit, ok = s.number(); ok {
				v, err := strconv.ParseFloat(string(lit), 64)
				ok = err == nil
				w.Value = wireFloat{v: v, set: true}
			}
		case "text":
			var t string
			if ok = s.stringField(&t); ok {
				w.Text = &t
			}
		case "quality":
			ok = s.enum(&w.Quality)
		case "state":
			ok = s.enum(&w.State)
		case "reason":
			var v uint64
			v, ok = s.uint(math.MaxUint32)
			w.Reason = uint32(v)
		case "counter":
			ok = s.enum(&w.Counter)
		case "wrap":
			w.Wrap, ok = s.uint(math.MaxUint64)
		}
		return ok
	})
}

// parseTimestamp reads the form Encode writes, "2006-01-02T15:04:05Z" with 0 to 9
// fraction digits ("…05.123Z"), without allocating; anything else (an offset, a comma,
// a day the month has not, a leap second) is not taken, and time.Parse decides.
func parseTimestamp(b []byte) (time.Time, bool) {
	if len(b) < 20 || b[4] != '-' || b[7] != '-' || b[10] != 'T' || b[13] != ':' || b[16] != ':' || b[len(b)-1] != 'Z' {
		return time.Time{}, false
	}
	num := func(f []byte) (int, bool) {
		n := 0
		for _, c := range f {
			if c < '0' || c > '9' {
				return 0, false
			}
			n = n*10 + int(c-'0')
		}
		return n, true
	}
	year, ok1 := num(b[0:4])
	month, ok2 := num(b[5:7])
	day, ok3 := num(b[8:10])
	hour, ok4 := num(b[11:13])
	minute, ok5 := num(b[14:16])
	sec, ok6 := num(b[17:19])
	if !(ok1 && ok2 && ok3 && ok4 && ok5 && ok6) || month < 1 || month > 12 || day < 1 || hour > 23 || minute > 59 || sec > 59 {
		return time.Time{}, false
	}
	if day > daysIn(time.Month(month), year) {
		return time.Time{}, false
	}
	nsec := 0
	switch frac := b[19 : len(b)-1]; {
	case len(frac) == 0:
	case frac[0] != '.' || len(frac) < 2 || len(frac) > 10:
		return time.Time{}, false
	default:
		n, ok := num(frac[1:])
		if !ok {
			return time.Time{}, false
		}
		for range 10 - len(frac) {
			n *= 10
		}
		nsec = n
	}
	return time.Date(year, time.Month(month), day, hour, minute, sec, nsec, time.UTC), true
}

func daysIn(m time.Month, year int) int {
	if m == time.February {
		if year%4 == 0 && (year%100 != 0 || year%400 == 0) {
			return 29
		}
		return 28
	}
	return 31 - int((m-1)%7%2)
}
