// Package windows turns stored observations of one equipment into the OEE windows of
// one day: hours and the day in the site's time zone, and the shifts of its
// calendar. It is pure; the store feeds it.
//
// Contract: state intervals come from oee.Intervals (states hold until the next
// observation); counter readings become
// increments in time order (resets and wraps resolved by oee.Increment), the first
// reading of a counter only anchors it.
// Windows are aligned to the site's local midnight and hours (a DST day has 23 or 25
// hours), a shift window belongs to the day it starts.
package windows

import (
	"sort"
	"time"

	"takt.dev/plant/oee"
	"takt.dev/schemas"
)

// Reading is one reading of a cumulative counter.
type Reading struct {
	Tag   string
	Kind  schemas.CounterKind
	TS    time.Time
	Value uint64
	Wrap  uint64
}

// Shift is one shift pattern of the site's calendar.
type Shift struct {
	Name     string
	StartsAt time.Duration // after local midnight
	Duration time.Duration
	Weekdays []time.Weekday
	Breaks   []Break
	// The local dates the pattern is valid on, inclusive; zero means unbounded. A
	// past day is computed with the calendar valid on that day.
	ValidFrom, ValidTo time.Time
}

// validOn reports whether the pattern applies to the local date d.
func (s Shift) validOn(d time.Time) bool {
	day := time.Date(d.Year(), d.Month(), d.Day(), 0, 0, 0, 0, time.UTC)
	if !s.ValidFrom.IsZero() && day.Before(s.ValidFrom) {
		return false
	}
	return s.ValidTo.IsZero() || !day.After(s.ValidTo)
}

// Break is a planned break, relative to its shift's start.
type Break struct{ Offset, Duration time.Duration }

// Equipment is what the windows of one equipment depend on besides its data.
type Equipment struct {
	IdealCycle         time.Duration
	MicroStopThreshold time.Duration
	Location           *time.Location
	Shifts             []Shift    // none: the equipment is scheduled around the clock
	PlannedStops       []oee.Span // one-off planned stops
	Runs               []oee.Run  // production runs: which product ran when
}

// Window is one computed window.
type Window struct {
	Granularity string // hour, shift or day
	Name        string // the shift's name, for shift windows
	oee.Result
}

// Counts turns readings (any order, several counters) into increments, each at the
// time of the reading that showed it.
func Counts(readings []Reading) []oee.Count {
	sort.Slice(readings, func(i, j int) bool {
		if readings[i].Tag != readings[j].Tag {
			return readings[i].Tag < readings[j].Tag
		}
		return readings[i].TS.Before(readings[j].TS)
	})
	var out []oee.Count
	for i, r := range readings {
		if i == 0 || readings[i-1].Tag != r.Tag {
			continue // the first reading anchors the counter
		}
		n, _ := oee.Increment(readings[i-1].Value, r.Value, r.Wrap)
		if n > 0 {
			out = append(out, oee.Count{TS: r.TS, Kind: r.Kind, N: int64(n)})
		}
	}
	return out
}

// DaySpan is the local day containing t, as a UTC span (23, 24 or 25 hours).
func DaySpan(t time.Time, loc *time.Location) oee.Span {
	l := t.In(loc)
	start := time.Date(l.Year(), l.Month(), l.Day(), 0, 0, 0, 0, loc)
	return oee.Span{Start: start, End: start.AddDate(0, 0, 1)}
}

// shiftSpans returns the occurrences of the shifts starting on local dates from..to
// (inclusive), with their planned breaks.
func shiftSpans(shifts []Shift, loc *time.Location, from, to time.Time) (occ []namedSpan, breaks []oee.Span) {
	for d := from; !d.After(to); d = d.AddDate(0, 0, 1) {
		for _, s := range shifts {
			if !hasDay(s.Weekdays, d.Weekday()) || !s.validOn(d) {
				continue
			}
			start := time.Date(d.Year(), d.Month(), d.Day(), 0, 0, 0, 0, loc).Add(s.StartsAt)
			occ = append(occ, namedSpan{s.Name, oee.Span{Start: start, End: start.Add(s.Duration)}})
			for _, b := range s.Breaks {
				breaks = append(breaks, oee.Span{Start: start.Add(b.Offset), End: start.Add(b.Offset + b.Duration)})
			}
		}
	}
	return occ, breaks
}

type namedSpan struct {
	name string
	oee.Span
}

func hasDay(days []time.Weekday, d time.Weekday) bool {
	for _, x := range days {
		if x == d {
			return true
		}
	}
	return false
}

// Day computes the hour, shift and day windows of the local day containing t.
// states and counts must cover the day and whatever precedes it that matters (the
// state carried into the day, shifts starting the day before).
func Day(eq Equipment, t, now time.Time, states []oee.StateInterval, counts []oee.Count) []Window {
	loc := eq.Location
	if loc == nil {
		loc = time.UTC
	}
	day := DaySpan(t, loc)
	base := oee.Input{Now: now, States: states, Counts: counts, IdealCycle: eq.IdealCycle, MicroStopThreshold: eq.MicroStopThreshold, Runs: eq.Runs}
	local := day.Start.In(loc)
	occ, breaks := shiftSpans(eq.Shifts, loc, local.AddDate(0, 0, -1), local.AddDate(0, 0, 1))
	if len(eq.Shifts) > 0 {
		base.Scheduled = make([]oee.Span, len(occ))
		for i, o := range occ {
			base.Scheduled[i] = o.Span
		}
	}
	base.PlannedStops = append(append([]oee.Span(nil), breaks...), eq.PlannedStops...)

	var out []Window
	for h := day.Start; h.Before(day.End); h = h.Add(time.Hour) {
		in := base
		in.Window = oee.Span{Start: h, End: h.Add(time.Hour)}
		out = append(out, Window{Granularity: "hour", Result: oee.Compute(in)})
	}
	for _, o := range occ {
		if o.Start.Before(day.Start) || !o.Start.Before(day.End) {
			continue // belongs to another day
		}
		in := base
		in.Window = o.Span
		out = append(out, Window{Granularity: "shift", Name: o.name, Result: oee.Compute(in)})
	}
	in := base
	in.Window = day
	out = append(out, Window{Granularity: "day", Result: oee.Compute(in)})
	return out
}
