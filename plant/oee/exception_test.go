package oee

import (
	"math/rand/v2"
	"testing"
	"time"

	"takt.dev/schemas"
)

// byException turns (time, state) changes into observations, one per change only, as
// an OPC UA subscription or Sparkplug B reports them.
func byException(changes ...Observation) []Observation { return changes }

// A published worked example with states sent only when they change: the figures
// must not depend on how often a source repeats itself.
func TestStatesByExceptionGiveExactOEE(t *testing.T) {
	for _, c := range []struct {
		name         string
		obs          []Observation
		in           Input
		a, p, q, oee float64
	}{
		{
			// The measurement: an 8 h shift, 7 h running, ideal cycle 60 s,
			// 400 parts, no scrap. A = 7/8, P = 400 × 60 / 25,200, Q = 1.
			name: "8h shift, 7h running",
			obs: byException(
				Observation{TS: at(6, 0), State: schemas.StateRunning},
				Observation{TS: at(9, 0), State: schemas.StateStoppedUnplanned, Reason: 3},
				Observation{TS: at(10, 0), State: schemas.StateRunning},
			),
			in: Input{Window: Span{at(6, 0), at(14, 0)}, Now: at(20, 0), IdealCycle: time.Minute, MicroStopThreshold: 2 * time.Minute,
				Counts: []Count{{TS: at(13, 59), Kind: schemas.CounterTotal, N: 400}}},
			a: 7.0 / 8, p: 400.0 * 60 / (7 * 3600), q: 1, oee: 7.0 / 8 * 400 * 60 / (7 * 3600),
		},
		{
			// oee.com, with its three states sent once each.
			name: "oee.com",
			obs: byException(
				Observation{TS: at(5, 0), State: schemas.StateRunning},
				Observation{TS: at(6, 30), State: schemas.StateStoppedUnplanned, Reason: 101},
				Observation{TS: at(7, 17), State: schemas.StateRunning},
			),
			in: func() Input { in := oeeDotCom(); in.States = nil; return in }(),
			a:  373.0 / 420, p: 19271.0 / (373 * 60), q: 18848.0 / 19271, oee: 18848.0 / (420 * 60),
		},
	} {
		t.Run(c.name, func(t *testing.T) {
			in := c.in
			in.States = Intervals(c.obs, 0, in.Now)
			r := Compute(in)
			near(t, "availability", r.Availability, c.a)
			near(t, "performance", r.Performance, c.p)
			near(t, "quality", r.Quality, c.q)
			near(t, "OEE", r.OEE, c.oee)
			near(t, "coverage", r.Coverage, 1)
			if r.UnknownS != 0 {
				t.Fatalf("unknown %v s", r.UnknownS)
			}
			// Re-sending the same states every 30 s changes nothing.
			var dense []Observation
			for i, o := range c.obs {
				end := in.Now
				if i+1 < len(c.obs) {
					end = c.obs[i+1].TS
				}
				for ts := o.TS; ts.Before(end); ts = ts.Add(30 * time.Second) {
					dense = append(dense, Observation{TS: ts, State: o.State, Reason: o.Reason})
				}
			}
			in.States = Intervals(dense, 0, in.Now)
			d := Compute(in)
			if *d.OEE != *r.OEE || d.RunS != r.RunS || d.PlannedS != r.PlannedS {
				t.Fatalf("re-sent every 30 s: OEE %v run %v planned %v; by exception %v %v %v", *d.OEE, d.RunS, d.PlannedS, *r.OEE, r.RunS, r.PlannedS)
			}
		})
	}
}

// Knowledge ends only explicitly: an UNKNOWN observation (a bad read, the agent
// offline) makes the time after it unknown until the next state; coverage says how
// much of the window the figures rest on.
func TestKnowledgeEndsExplicitly(t *testing.T) {
	obs := []Observation{
		{TS: at(6, 0), State: schemas.StateRunning},
		{TS: at(8, 0), State: schemas.StateUnknown}, // the agent went offline
		{TS: at(10, 0), State: schemas.StateRunning},
	}
	r := Compute(Input{Window: Span{at(6, 0), at(14, 0)}, Now: at(20, 0), States: Intervals(obs, 0, at(20, 0))})
	if r.RunS != 6*3600 || r.UnknownS != 2*3600 || r.PlannedS != 6*3600 || r.ScheduledS != 8*3600 {
		t.Fatalf("run %v unknown %v planned %v scheduled %v", r.RunS, r.UnknownS, r.PlannedS, r.ScheduledS)
	}
	near(t, "coverage", r.Coverage, 0.75)

	// The opt-in staleness limit: a state holds 1 h at most.
	r = Compute(Input{Window: Span{at(6, 0), at(14, 0)}, Now: at(20, 0), States: Intervals(obs[:1], time.Hour, at(20, 0))})
	if r.RunS != 3600 || r.UnknownS != 7*3600 {
		t.Fatalf("with max age: run %v unknown %v", r.RunS, r.UnknownS)
	}
	// A 47-minute breakdown reported once is a breakdown, not a micro-stop.
	r = Compute(Input{Window: Span{at(6, 0), at(8, 0)}, Now: at(20, 0), MicroStopThreshold: 2 * time.Minute,
		States: Intervals([]Observation{{TS: at(6, 0), State: schemas.StateStoppedUnplanned}, {TS: at(6, 47), State: schemas.StateRunning}}, 0, at(20, 0))})
	if r.BreakdownS != 47*60 || r.MicroStopS != 0 || r.Breakdowns != 1 {
		t.Fatalf("breakdown %v micro %v count %d", r.BreakdownS, r.MicroStopS, r.Breakdowns)
	}
}

// Counters that contradict each other are stored as measured with a flag; quality
// and OEE are then undefined, never above 1.
func TestGoodAboveTotalIsAnAnomaly(t *testing.T) {
	r := Compute(Input{Window: Span{at(6, 0), at(7, 0)}, Now: at(20, 0), IdealCycle: time.Second,
		States: []StateInterval{{Start: at(6, 0), End: at(7, 0), State: schemas.StateRunning}},
		Counts: []Count{{TS: at(6, 30), Kind: schemas.CounterGood, N: 100}}})
	if !r.GoodAboveTotal || r.Quality != nil || r.OEE != nil || r.GoodCount != 100 || r.TotalCount != 0 {
		t.Fatalf("good-only: %+v", r)
	}
	if s := Sum(r, Compute(Input{Window: Span{at(7, 0), at(8, 0)}, Now: at(20, 0)})); !s.GoodAboveTotal || s.Quality != nil {
		t.Fatalf("sum: %+v", s)
	}
}

// Timestamps with nanoseconds never give negative or inexact times.
func TestNanosecondsNeverGiveNegativeTimes(t *testing.T) {
	rng := rand.New(rand.NewPCG(7, 7))
	for range 200 {
		var obs []Observation
		ts := at(6, 0).Add(time.Duration(rng.Int64N(int64(time.Second))))
		for range 50 {
			obs = append(obs, Observation{TS: ts, State: schemas.StateCategory(rng.IntN(7))})
			ts = ts.Add(time.Duration(rng.Int64N(int64(2 * time.Second))))
		}
		w := Span{at(6, 0).Add(time.Duration(rng.Int64N(int64(time.Second)))), ts.Add(-time.Duration(rng.Int64N(int64(time.Second))))}
		r := Compute(Input{Window: w, Now: at(20, 0), States: Intervals(obs, 0, ts), MicroStopThreshold: time.Second,
			PlannedStops: []Span{{w.Start.Add(333333333), w.Start.Add(777777777)}}})
		for name, v := range map[string]float64{"unknown": r.UnknownS, "run": r.RunS, "planned": r.PlannedS, "planned down": r.PlannedDownS, "not scheduled": r.NotScheduledS} {
			if v < 0 {
				t.Fatalf("%s = %g s", name, v)
			}
		}
		if r.Coverage != nil && (*r.Coverage < 0 || *r.Coverage > 1) {
			t.Fatalf("coverage %v", *r.Coverage)
		}
	}
}

// Two products of different ideal cycle times with a changeover between their runs:
// each part takes its product's ideal cycle time, and the time between the runs is
// setup, although the machine said it was running.
func TestTwoProductsAndAChangeover(t *testing.T) {
	in := Input{Window: Span{at(6, 0), at(14, 0)}, Now: at(20, 0), IdealCycle: 10 * time.Second, MicroStopThreshold: 2 * time.Minute,
		States: Intervals([]Observation{{TS: at(6, 0), State: schemas.StateRunning}}, 0, at(20, 0)),
		Runs: []Run{{Span: Span{at(6, 0), at(9, 0)}, Product: "A", IdealCycle: time.Second},
			{Span: Span{at(9, 30), at(14, 0)}, Product: "B", IdealCycle: 2 * time.Second}},
		Counts: []Count{{TS: at(8, 59), Kind: schemas.CounterTotal, N: 9000}, {TS: at(13, 59), Kind: schemas.CounterTotal, N: 7200}},
	}
	r := Compute(in)
	if r.SetupS != 1800 || r.RunS != 27000 || r.PlannedS != 28800 || r.IdealRunS != 9000+14400 {
		t.Fatalf("setup %v run %v planned %v ideal %v", r.SetupS, r.RunS, r.PlannedS, r.IdealRunS)
	}
	near(t, "availability", r.Availability, 27000.0/28800)
	near(t, "performance", r.Performance, 23400.0/27000)
	// Without runs, the equipment's own ideal cycle time applies to every part.
	in.Runs = nil
	r = Compute(in)
	near(t, "performance without runs", r.Performance, 16200.0*10/28800)
}
