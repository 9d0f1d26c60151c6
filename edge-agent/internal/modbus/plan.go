package modbus

import (
	"sort"
)

// Protocol limits per request.
const (
	MaxRegisters = 125  // read holding/input registers
	MaxBits      = 2000 // read coils/discrete inputs
)

// Request is one read of adjacent addresses of one register kind, covering tags.
type Request struct {
	Register string // holding, input, coil, discrete
	Start    int
	Count    int
	Tags     []Slot
}

// Slot places one tag in a request's response.
type Slot struct {
	Tag    int // index in the device's tag list
	Offset int // first register (or bit) of the tag, relative to Request.Start
	Count  int
}

// Plan merges the tags' addresses into as few requests as the protocol allows:
// tags of one register kind whose addresses are at most gapFill registers apart
// share a request, up to MaxRegisters registers (MaxBits bits).
func Plan(tags []Tag, gapFill int) []Request {
	idx := make([]int, len(tags))
	for i := range idx {
		idx[i] = i
	}
	sort.SliceStable(idx, func(a, b int) bool {
		ta, tb := tags[idx[a]], tags[idx[b]]
		if ta.Register != tb.Register {
			return ta.Register < tb.Register
		}
		return *ta.Address < *tb.Address
	})
	var out []Request
	for _, i := range idx {
		t := tags[i]
		n := RegisterCount(t.Type, t.Length)
		limit := MaxRegisters
		if t.Register == "coil" || t.Register == "discrete" {
			limit = MaxBits
		}
		addr := *t.Address
		if k := len(out) - 1; k >= 0 {
			r := &out[k]
			end := max(r.Start+r.Count, addr+n)
			if r.Register == t.Register && addr-(r.Start+r.Count) <= gapFill && end-r.Start <= limit {
				r.Count = end - r.Start
				r.Tags = append(r.Tags, Slot{Tag: i, Offset: addr - r.Start, Count: n})
				continue
			}
		}
		out = append(out, Request{Register: t.Register, Start: addr, Count: n, Tags: []Slot{{Tag: i, Count: n}}})
	}
	return out
}
