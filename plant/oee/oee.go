// Package oee computes Overall Equipment Effectiveness from an equipment's state
// intervals, part counts, ideal cycle time and planned time. It is pure: no I/O, no
// clock; the caller passes everything, Now included.
//
// The time model, for every instant of a window up to Now:
//
//   - outside the scheduled time (shift calendar) it is not scheduled;
//   - inside it, a planned stop (break, planned maintenance) is planned down;
//   - otherwise the machine's state decides: RUNNING is run time; STOPPED_UNPLANNED
//     shorter than the micro-stop threshold (judged on the whole stop, not the part
//     inside the window) is a micro-stop and stays in run time, a performance loss;
//     longer ones are breakdowns; SETUP is setup; IDLE (starved, blocked) is idle;
//     PLANNED_DOWN and NOT_SCHEDULED states are planned down and not scheduled;
//   - an instant no state interval covers, or covered by UNKNOWN (a bad-quality read,
//     the source or the agent gone), is unknown: reported, never guessed, and not part
//     of the planned production time. Coverage = known scheduled time / scheduled
//     time says how much of a window the figures rest on.
//
// Planned production time is run time (micro-stops included) + breakdowns + setup +
// idle. Then availability = run / planned,
// performance = ideal cycle time × total count / run (reported as measured, above 1
// too, with a flag), quality = good / total, OEE = A × P × Q. A ratio whose
// denominator is zero is undefined (nil), never 0 or 1. Counts that contradict each
// other (more good parts than parts) are kept as measured, flagged as an anomaly, and
// leave quality and OEE undefined. Longer windows and lines are Sum-med from times and
// counts, never by averaging ratios. Times are summed in integer nanoseconds, so no
// figure is ever negative from rounding.
package oee

import (
	"sort"
	"time"

	"takt.dev/schemas"
)

// Span is a half-open time range [Start, End).
type Span struct{ Start, End time.Time }

// StateInterval is one machine state over [Start, End), whole: an interval that
// crosses a window border is passed unclipped, so that a stop's length is known.
type StateInterval struct {
	Start, End time.Time
	State      schemas.StateCategory
	Reason     uint32
}

// Count is an increment of one part counter at an instant (resets and wraps already
// turned into increments, see Increment).
type Count struct {
	TS   time.Time
	Kind schemas.CounterKind
	N    int64
}

// Input is everything one window's figures depend on.
type Input struct {
	Window             Span
	Now                time.Time // nothing after Now is counted
	States             []StateInterval
	Counts             []Count
	IdealCycle         time.Duration // seconds per part at full speed; 0: performance undefined
	MicroStopThreshold time.Duration // unplanned stops shorter than this are micro-stops
	Scheduled          []Span        // shift time; nil means the whole window is scheduled
	PlannedStops       []Span        // breaks and planned stops within the schedule
	// Runs say which product ran when, with its ideal cycle time: a part counted
	// during a run takes the run's product's ideal cycle time (IdealCycle outside
	// runs), and the time between two runs of the window is changeover (setup),
	// whatever the machine said, unless it is planned down, not scheduled or unknown.
	Runs []Run
}

// Run is one production run: a product on the equipment over [Start, End).
type Run struct {
	Span
	Product    string
	IdealCycle time.Duration
}

// Result is one window's figures. Times are seconds.
type Result struct {
	Start, End time.Time

	PlannedS      float64 // planned production time: Run + Breakdown + Setup + Idle
	RunS          float64 // running, micro-stops included
	MicroStopS    float64 // part of RunS
	BreakdownS    float64
	SetupS        float64
	IdleS         float64
	PlannedDownS  float64
	NotScheduledS float64
	UnknownS      float64
	CalendarS     float64 // the window up to Now
	ScheduledS    float64 // shift time in the window up to Now (planned stops included)

	TotalCount, GoodCount, ScrapCount int64
	IdealRunS                         float64 // ideal cycle time × total count
	HasIdealCycle                     bool    // every part of it has an ideal cycle time; else performance is undefined
	Breakdowns                        int     // breakdowns that began in the window

	Availability, Performance, Quality, OEE *float64
	TEEP                                    *float64 // OEE × planned / calendar time
	Coverage                                *float64 // (scheduled − unknown) / scheduled: the share of the figures that rest on data
	PerformanceAbove100                     bool     // measured performance above 1: the ideal cycle time is wrong
	GoodAboveTotal                          bool     // more good parts than parts: the counters disagree; quality and OEE undefined
	MTBF, MTTR                              *float64 // seconds: run time per breakdown, breakdown time per breakdown

	// Losses, in seconds of planned production time.
	AvailabilityLossS float64 // breakdown + setup + idle
	SpeedLossS        float64 // run time not explained by ideal cycles or micro-stops (reduced speed)
	QualityLossS      float64 // ideal time spent on scrap
}

// Compute returns the figures of one window.
func Compute(in Input) Result {
	end := in.Window.End
	if !in.Now.IsZero() && in.Now.Before(end) {
		end = in.Now
	}
	r := Result{Start: in.Window.Start, End: in.Window.End, HasIdealCycle: in.IdealCycle > 0}
	if !end.After(in.Window.Start) {
		finish(&r)
		return r
	}
	win := Span{in.Window.Start, end}
	r.CalendarS = sec(end.Sub(in.Window.Start))
	sched := []Span{win}
	if in.Scheduled != nil {
		sched = clipAll(in.Scheduled, win)
	}
	planned := subtract(sched, clipAll(in.PlannedStops, win))
	schedD, plannedD := total(sched), total(planned)
	r.ScheduledS = sec(schedD)
	r.NotScheduledS = sec(end.Sub(in.Window.Start) - schedD)

	// Within planned time, the states decide. Sums are kept in nanoseconds.
	var run, micro, breakdown, setup, idle, plannedDown, notScheduled, covered time.Duration
	states := changeovers(in.States, in.Runs)
	sort.Slice(states, func(i, j int) bool { return states[i].Start.Before(states[j].Start) })
	for _, s := range states {
		for _, p := range planned {
			d := overlap(Span{s.Start, s.End}, p)
			if d <= 0 {
				continue
			}
			covered += d
			switch s.State {
			case schemas.StateRunning:
				run += d
			case schemas.StateStoppedUnplanned:
				if s.End.Sub(s.Start) < in.MicroStopThreshold {
					run += d
					micro += d
				} else {
					breakdown += d
				}
			case schemas.StateSetup:
				setup += d
			case schemas.StateIdle:
				idle += d
			case schemas.StatePlannedDown:
				plannedDown += d
			case schemas.StateNotScheduled:
				notScheduled += d
			default:
				covered -= d // UNKNOWN is no knowledge
			}
		}
		if s.State == schemas.StateStoppedUnplanned && s.End.Sub(s.Start) >= in.MicroStopThreshold &&
			!s.Start.Before(win.Start) && s.Start.Before(win.End) {
			r.Breakdowns++
		}
	}
	unknown := max(plannedD-covered, 0)
	r.RunS, r.MicroStopS, r.BreakdownS, r.SetupS, r.IdleS = sec(run), sec(micro), sec(breakdown), sec(setup), sec(idle)
	r.PlannedDownS = sec(schedD - plannedD + plannedDown)
	r.NotScheduledS += sec(notScheduled)
	r.UnknownS = sec(unknown)
	r.PlannedS = sec(run + breakdown + setup + idle)

	var good, scrap int64
	haveGood := false
	for _, c := range in.Counts {
		if c.TS.Before(win.Start) || !c.TS.Before(win.End) {
			continue
		}
		switch c.Kind {
		case schemas.CounterTotal:
			r.TotalCount += c.N
		case schemas.CounterGood:
			good += c.N
			haveGood = true
		case schemas.CounterScrap:
			scrap += c.N
		}
	}
	if haveGood {
		r.GoodCount = good
		r.ScrapCount = max(r.TotalCount-good, 0)
		r.GoodAboveTotal = good > r.TotalCount
	} else {
		r.ScrapCount = scrap
		r.GoodCount = max(r.TotalCount-scrap, 0)
	}
	var ideal time.Duration
	r.HasIdealCycle = true
	for _, c := range in.Counts {
		if c.Kind != schemas.CounterTotal || c.TS.Before(win.Start) || !c.TS.Before(win.End) {
			continue
		}
		ic := idealCycleAt(in, c.TS)
		if ic <= 0 {
			r.HasIdealCycle = false
		}
		ideal += time.Duration(c.N) * ic
	}
	if r.TotalCount == 0 {
		r.HasIdealCycle = in.IdealCycle > 0 || len(in.Runs) > 0
	}
	r.IdealRunS = sec(ideal)
	finish(&r)
	return r
}

// idealCycleAt is the ideal cycle time of the product running at t.
func idealCycleAt(in Input, t time.Time) time.Duration {
	for _, ru := range in.Runs {
		if !t.Before(ru.Start) && t.Before(ru.End) {
			return ru.IdealCycle
		}
	}
	return in.IdealCycle
}

// changeovers returns the states with the time between consecutive runs turned
// into setup, except where the machine was planned down, not scheduled or unknown.
func changeovers(states []StateInterval, runs []Run) []StateInterval {
	out := append([]StateInterval(nil), states...)
	if len(runs) < 2 {
		return out
	}
	rs := append([]Run(nil), runs...)
	sort.Slice(rs, func(i, j int) bool { return rs[i].Start.Before(rs[j].Start) })
	var gaps []Span
	for i := 1; i < len(rs); i++ {
		if rs[i].Start.After(rs[i-1].End) {
			gaps = append(gaps, Span{rs[i-1].End, rs[i].Start})
		}
	}
	if len(gaps) == 0 {
		return out
	}
	var res []StateInterval
	for _, s := range out {
		switch s.State {
		case schemas.StatePlannedDown, schemas.StateNotScheduled, schemas.StateUnknown:
			res = append(res, s)
			continue
		}
		rest := []StateInterval{s}
		for _, g := range gaps {
			var next []StateInterval
			for _, p := range rest {
				if !g.Start.Before(p.End) || !g.End.After(p.Start) {
					next = append(next, p)
					continue
				}
				if p.Start.Before(g.Start) {
					a := p
					a.End = g.Start
					next = append(next, a)
				}
				c := StateInterval{Start: maxTime(p.Start, g.Start), End: minTime(p.End, g.End), State: schemas.StateSetup}
				next = append(next, c)
				if p.End.After(g.End) {
					b := p
					b.Start = g.End
					next = append(next, b)
				}
			}
			rest = next
		}
		res = append(res, rest...)
	}
	return res
}

func maxTime(a, b time.Time) time.Time {
	if a.After(b) {
		return a
	}
	return b
}

func minTime(a, b time.Time) time.Time {
	if a.Before(b) {
		return a
	}
	return b
}

// Sum adds windows up (a longer window, a line, a site) and derives the ratios from
// the summed times and counts.
func Sum(rs ...Result) Result {
	s := Result{HasIdealCycle: true}
	for i, r := range rs {
		if i == 0 || r.Start.Before(s.Start) {
			s.Start = r.Start
		}
		if r.End.After(s.End) {
			s.End = r.End
		}
		s.PlannedS += r.PlannedS
		s.RunS += r.RunS
		s.MicroStopS += r.MicroStopS
		s.BreakdownS += r.BreakdownS
		s.SetupS += r.SetupS
		s.IdleS += r.IdleS
		s.PlannedDownS += r.PlannedDownS
		s.NotScheduledS += r.NotScheduledS
		s.UnknownS += r.UnknownS
		s.CalendarS += r.CalendarS
		s.ScheduledS += r.ScheduledS
		s.GoodAboveTotal = s.GoodAboveTotal || r.GoodAboveTotal
		s.TotalCount += r.TotalCount
		s.GoodCount += r.GoodCount
		s.ScrapCount += r.ScrapCount
		s.IdealRunS += r.IdealRunS
		s.Breakdowns += r.Breakdowns
		if r.RunS > 0 && !r.HasIdealCycle {
			s.HasIdealCycle = false
		}
	}
	finish(&s)
	return s
}

// finish derives ratios and losses from times and counts.
func finish(r *Result) {
	r.Availability = ratio(r.RunS, r.PlannedS)
	r.Performance = nil
	if r.HasIdealCycle {
		r.Performance = ratio(r.IdealRunS, r.RunS)
	}
	r.Quality = ratio(float64(r.GoodCount), float64(r.TotalCount))
	if r.GoodCount > r.TotalCount {
		r.GoodAboveTotal = true
		r.Quality = nil
	}
	r.Coverage = ratio(r.ScheduledS-r.UnknownS, r.ScheduledS)
	if r.Availability != nil && r.Performance != nil && r.Quality != nil {
		v := *r.Availability * *r.Performance * *r.Quality
		r.OEE = &v
		if r.CalendarS > 0 {
			t := v * r.PlannedS / r.CalendarS
			r.TEEP = &t
		}
	}
	r.PerformanceAbove100 = r.Performance != nil && *r.Performance > 1
	if r.Breakdowns > 0 {
		mtbf := r.RunS / float64(r.Breakdowns)
		mttr := r.BreakdownS / float64(r.Breakdowns)
		r.MTBF, r.MTTR = &mtbf, &mttr
	}
	r.AvailabilityLossS = r.BreakdownS + r.SetupS + r.IdleS
	if r.TotalCount > 0 {
		r.QualityLossS = r.IdealRunS * float64(r.ScrapCount) / float64(r.TotalCount)
	}
	r.SpeedLossS = max(r.RunS-r.MicroStopS-r.IdealRunS, 0)
}

func ratio(num, den float64) *float64 {
	if den <= 0 {
		return nil
	}
	v := num / den
	return &v
}

func sec(d time.Duration) float64 { return d.Seconds() }

func overlap(a, b Span) time.Duration {
	s, e := a.Start, a.End
	if b.Start.After(s) {
		s = b.Start
	}
	if b.End.Before(e) {
		e = b.End
	}
	if !e.After(s) {
		return 0
	}
	return e.Sub(s)
}

// clipAll clips spans to w, merging overlaps, sorted.
func clipAll(spans []Span, w Span) []Span {
	var out []Span
	for _, s := range spans {
		if s.Start.Before(w.Start) {
			s.Start = w.Start
		}
		if s.End.After(w.End) {
			s.End = w.End
		}
		if s.End.After(s.Start) {
			out = append(out, s)
		}
	}
	sort.Slice(out, func(i, j int) bool { return out[i].Start.Before(out[j].Start) })
	merged := out[:0]
	for _, s := range out {
		if n := len(merged); n > 0 && !s.Start.After(merged[n-1].End) {
			if s.End.After(merged[n-1].End) {
				merged[n-1].End = s.End
			}
			continue
		}
		merged = append(merged, s)
	}
	return merged
}

// subtract removes the (sorted, disjoint) holes from the (sorted, disjoint) spans.
func subtract(spans, holes []Span) []Span {
	var out []Span
	for _, s := range spans {
		cur := s
		for _, h := range holes {
			if !h.End.After(cur.Start) || !h.Start.Before(cur.End) {
				continue
			}
			if h.Start.After(cur.Start) {
				out = append(out, Span{cur.Start, h.Start})
			}
			cur.Start = h.End
			if !cur.End.After(cur.Start) {
				break
			}
		}
		if cur.End.After(cur.Start) {
			out = append(out, cur)
		}
	}
	return out
}

func total(spans []Span) time.Duration {
	var t time.Duration
	for _, s := range spans {
		t += s.End.Sub(s.Start)
	}
	return t
}

// Increment turns two successive readings of a cumulative counter into the parts
// made between them. A value below the previous one is a wrap when the counter's wrap
// value is known and the wrapped distance is under half of it (the counter went past
// its top and on from 0); otherwise it is a reset (the PLC set it to 0 and counted
// cur parts since). A reading equal to the previous one made no parts.
func Increment(prev, cur, wrap uint64) (n uint64, reset bool) {
	if cur >= prev {
		return cur - prev, false
	}
	if wrap > 0 && prev < wrap {
		if d := wrap - prev + cur; d < wrap/2 {
			return d, false
		}
	}
	return cur, true
}

// Observation is one state sample of an equipment.
type Observation struct {
	TS     time.Time
	State  schemas.StateCategory
	Reason uint32
}

// Intervals turns observations (any order) into state intervals up to until: an
// observation holds until the next one, as sources that report by exception (OPC UA
// subscriptions, Sparkplug B) mean it, and the last one holds until until. Knowledge
// ends only explicitly, with an UNKNOWN observation (a bad-quality read, the source
// or the agent gone). maxAge > 0 is an opt-in safety net for sources that are known
// to repeat themselves: an observation then holds for maxAge at most, and the time
// after it is unknown. Consecutive observations of the same state and reason make one
// interval; UNKNOWN stretches are left out (no interval is no knowledge).
func Intervals(obs []Observation, maxAge time.Duration, until time.Time) []StateInterval {
	sort.Slice(obs, func(i, j int) bool { return obs[i].TS.Before(obs[j].TS) })
	var out []StateInterval
	for i, o := range obs {
		end := until
		if i+1 < len(obs) {
			end = obs[i+1].TS
		}
		if maxAge > 0 && o.TS.Add(maxAge).Before(end) {
			end = o.TS.Add(maxAge)
		}
		if !end.After(o.TS) || o.State == schemas.StateUnknown {
			continue
		}
		if n := len(out); n > 0 && out[n-1].State == o.State && out[n-1].Reason == o.Reason && out[n-1].End.Equal(o.TS) {
			out[n-1].End = end
			continue
		}
		out = append(out, StateInterval{Start: o.TS, End: end, State: o.State, Reason: o.Reason})
	}
	return out
}
