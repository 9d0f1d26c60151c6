package oee

import (
	"math"
	"math/rand/v2"
	"testing"
	"time"

	"takt.dev/schemas"
)

var day = time.Date(2026, 11, 25, 0, 0, 0, 0, time.UTC)

func at(h, m int) time.Time {
	return day.Add(time.Duration(h)*time.Hour + time.Duration(m)*time.Minute)
}

func near(t *testing.T, name string, got *float64, want float64) {
	t.Helper()
	if got == nil {
		t.Fatalf("%s is undefined, want %.9f", name, want)
	}
	if math.Abs(*got-want) > 5e-7 {
		t.Fatalf("%s = %.9f, want %.9f (to six decimals)", name, *got, want)
	}
}

// oeeDotCom is the worked example of oee.com ("Calculate OEE"): an 8-hour shift with
// two 15-minute breaks and a 30-minute meal, 47 minutes of downtime, an ideal rate of
// 60 parts per minute, 19,271 parts of which 423 rejects.
func oeeDotCom() Input {
	return Input{
		Window:             Span{at(6, 0), at(14, 0)},
		Now:                at(23, 0),
		IdealCycle:         time.Second,
		MicroStopThreshold: 2 * time.Minute,
		PlannedStops:       []Span{{at(8, 30), at(8, 45)}, {at(10, 0), at(10, 30)}, {at(12, 0), at(12, 15)}},
		States: []StateInterval{
			{Start: at(5, 0), End: at(6, 30), State: schemas.StateRunning}, // carried into the window
			{Start: at(6, 30), End: at(7, 17), State: schemas.StateStoppedUnplanned, Reason: 101},
			{Start: at(7, 17), End: at(14, 30), State: schemas.StateRunning},
		},
		Counts: []Count{
			{TS: at(7, 0), Kind: schemas.CounterTotal, N: 9000},
			{TS: at(11, 0), Kind: schemas.CounterTotal, N: 10271},
			{TS: at(11, 0), Kind: schemas.CounterScrap, N: 423},
			{TS: at(14, 0), Kind: schemas.CounterTotal, N: 999}, // next shift: not counted
		},
	}
}

func TestOEEDotComWorkedExample(t *testing.T) {
	r := Compute(oeeDotCom())
	if r.PlannedS != 420*60 || r.RunS != 373*60 || r.BreakdownS != 47*60 || r.PlannedDownS != 60*60 {
		t.Fatalf("planned %v run %v breakdown %v planned down %v (s)", r.PlannedS, r.RunS, r.BreakdownS, r.PlannedDownS)
	}
	if r.TotalCount != 19271 || r.GoodCount != 18848 || r.ScrapCount != 423 {
		t.Fatalf("counts %d/%d/%d", r.TotalCount, r.GoodCount, r.ScrapCount)
	}
	near(t, "availability", r.Availability, 0.888095238095) // 373 / 420
	near(t, "performance", r.Performance, 0.861081322609)   // 19,271 / (373 × 60)
	near(t, "quality", r.Quality, 0.978049919568)           // 18,848 / 19,271
	near(t, "OEE", r.OEE, 0.747936507937)                   // = 18,848 × 1 s / 420 min
	near(t, "TEEP", r.TEEP, 0.747936507937*420/480)
	if r.Breakdowns != 1 || *r.MTTR != 47*60 || *r.MTBF != 373*60 {
		t.Fatalf("breakdowns %d MTTR %v MTBF %v", r.Breakdowns, *r.MTTR, *r.MTBF)
	}
	if r.PerformanceAbove100 {
		t.Fatal("flagged above 100%")
	}
	near(t, "quality loss", &r.QualityLossS, 423) // 423 parts of 1 s
}

// The same shift cut into hours: states spanning hour borders are split at them, and
// the hours sum to exactly the shift.
func TestWindowsSumToTheShift(t *testing.T) {
	in := oeeDotCom()
	whole := Compute(in)
	var hours []Result
	for h := 6; h < 14; h++ {
		w := in
		w.Window = Span{at(h, 0), at(h+1, 0)}
		hours = append(hours, Compute(w))
	}
	sum := Sum(hours...)
	for name, pair := range map[string][2]float64{
		"planned": {sum.PlannedS, whole.PlannedS}, "run": {sum.RunS, whole.RunS}, "breakdown": {sum.BreakdownS, whole.BreakdownS},
		"total": {float64(sum.TotalCount), float64(whole.TotalCount)}, "good": {float64(sum.GoodCount), float64(whole.GoodCount)},
	} {
		if math.Abs(pair[0]-pair[1]) > 1e-9 {
			t.Errorf("%s: hours sum to %v, the shift has %v", name, pair[0], pair[1])
		}
	}
	near(t, "OEE of the summed hours", sum.OEE, *whole.OEE)
	// The 06:30-07:17 breakdown crosses 07:00: 30 min in one hour, 17 in the next,
	// both counted as breakdown because the whole stop is 47 minutes.
	if hours[0].BreakdownS != 30*60 || hours[1].BreakdownS != 17*60 || hours[1].MicroStopS != 0 {
		t.Fatalf("split breakdown: %v + %v, micro %v", hours[0].BreakdownS, hours[1].BreakdownS, hours[1].MicroStopS)
	}
	if hours[0].Breakdowns+hours[1].Breakdowns != 1 {
		t.Fatal("one breakdown counted twice across the border")
	}
}

func TestMicroStopsArePerformanceLoss(t *testing.T) {
	in := Input{
		Window: Span{at(0, 0), at(1, 0)}, IdealCycle: time.Second, MicroStopThreshold: 2 * time.Minute,
		States: []StateInterval{
			{Start: at(0, 0), End: at(0, 20), State: schemas.StateRunning},
			{Start: at(0, 20), End: at(0, 21), State: schemas.StateStoppedUnplanned}, // 1 min: micro-stop
			{Start: at(0, 21), End: at(0, 50), State: schemas.StateRunning},
			{Start: at(0, 50), End: at(1, 0), State: schemas.StateSetup},
		},
		Counts: []Count{{TS: at(0, 30), Kind: schemas.CounterTotal, N: 2400}, {TS: at(0, 30), Kind: schemas.CounterGood, N: 2350}},
	}
	r := Compute(in)
	if r.RunS != 50*60 || r.MicroStopS != 60 || r.SetupS != 600 || r.PlannedS != 3600 {
		t.Fatalf("run %v micro %v setup %v planned %v", r.RunS, r.MicroStopS, r.SetupS, r.PlannedS)
	}
	near(t, "availability", r.Availability, 50.0/60)
	near(t, "performance", r.Performance, 2400.0/3000)
	near(t, "quality", r.Quality, 2350.0/2400) // good counter given: scrap = total - good
	if r.ScrapCount != 50 {
		t.Fatalf("scrap %d", r.ScrapCount)
	}
	near(t, "speed loss", &r.SpeedLossS, 3000-60-2400)
}

func TestUndefinedIsNotZero(t *testing.T) {
	// A window outside every shift: no planned time, no OEE.
	in := Input{Window: Span{at(22, 0), at(23, 0)}, Scheduled: []Span{{at(6, 0), at(14, 0)}}, IdealCycle: time.Second,
		States: []StateInterval{{Start: at(0, 0), End: at(24, 0), State: schemas.StateRunning}}}
	r := Compute(in)
	if r.NotScheduledS != 3600 || r.Availability != nil || r.OEE != nil || r.Quality != nil {
		t.Fatalf("not scheduled %v, availability %v, OEE %v", r.NotScheduledS, r.Availability, r.OEE)
	}
	// No ideal cycle time: performance (and OEE) undefined, availability known.
	in = oeeDotCom()
	in.IdealCycle = 0
	r = Compute(in)
	if r.Performance != nil || r.OEE != nil || r.Availability == nil {
		t.Fatalf("without an ideal cycle time: performance %v OEE %v", r.Performance, r.OEE)
	}
}

func TestUnknownTimeIsReportedNotGuessed(t *testing.T) {
	in := Input{Window: Span{at(0, 0), at(1, 0)}, IdealCycle: time.Second,
		States: []StateInterval{
			{Start: at(0, 0), End: at(0, 20), State: schemas.StateRunning},
			// 00:20-00:40: no data (the agent was away)
			{Start: at(0, 40), End: at(0, 50), State: schemas.StateStoppedUnplanned},
			{Start: at(0, 50), End: at(1, 0), State: schemas.StateUnknown},
		}}
	r := Compute(in)
	if r.UnknownS != 30*60 || r.PlannedS != 30*60 {
		t.Fatalf("unknown %v planned %v", r.UnknownS, r.PlannedS)
	}
	near(t, "availability", r.Availability, 20.0/30)
}

func TestNowCutsTheWindow(t *testing.T) {
	in := Input{Window: Span{at(0, 0), at(1, 0)}, Now: at(0, 15), IdealCycle: time.Second,
		States: []StateInterval{{Start: at(0, 0), End: at(0, 15), State: schemas.StateRunning}}}
	r := Compute(in)
	if r.CalendarS != 900 || r.PlannedS != 900 || r.UnknownS != 0 {
		t.Fatalf("calendar %v planned %v unknown %v", r.CalendarS, r.PlannedS, r.UnknownS)
	}
}

func TestPerformanceAbove100IsReported(t *testing.T) {
	in := Input{Window: Span{at(0, 0), at(1, 0)}, IdealCycle: time.Second,
		States: []StateInterval{{Start: at(0, 0), End: at(1, 0), State: schemas.StateRunning}},
		Counts: []Count{{TS: at(0, 5), Kind: schemas.CounterTotal, N: 3960}}}
	r := Compute(in)
	near(t, "performance", r.Performance, 1.1)
	if !r.PerformanceAbove100 {
		t.Fatal("not flagged")
	}
}

// A line's OEE comes from summed times and counts, not from averaging the machines'
// OEE: with equal planned times the two agree, with unequal ones they do not (an hour
// at 0.5 and half an hour at 1.0 are 2/3 together, not 0.75).
func TestLineFromSumsNotAverages(t *testing.T) {
	a := Compute(Input{Window: Span{at(0, 0), at(1, 0)}, IdealCycle: time.Second,
		States: []StateInterval{{Start: at(0, 0), End: at(1, 0), State: schemas.StateRunning}},
		Counts: []Count{{TS: at(0, 1), Kind: schemas.CounterTotal, N: 1800}}})
	b := Compute(Input{Window: Span{at(0, 0), at(1, 0)}, IdealCycle: 36 * time.Second,
		States: []StateInterval{{Start: at(0, 0), End: at(1, 0), State: schemas.StateRunning}},
		Counts: []Count{{TS: at(0, 1), Kind: schemas.CounterTotal, N: 100}}})
	near(t, "a", a.OEE, 0.5)
	near(t, "b", b.OEE, 1.0)
	line := Sum(a, b)
	near(t, "line performance", line.Performance, (1800+3600)/7200.0)
	near(t, "line OEE", line.OEE, 0.75) // equal here because planned times are equal...
	c := Compute(Input{Window: Span{at(0, 0), at(0, 30)}, IdealCycle: time.Second,
		States: []StateInterval{{Start: at(0, 0), End: at(0, 30), State: schemas.StateRunning}},
		Counts: []Count{{TS: at(0, 1), Kind: schemas.CounterTotal, N: 1800}}})
	near(t, "c", c.OEE, 1.0)
	line = Sum(a, c)                             // ...and differ when they are not
	near(t, "line OEE", line.OEE, 3600.0/5400.0) // not (0.5 + 1.0) / 2
}

func TestIncrement(t *testing.T) {
	cases := []struct {
		prev, cur, wrap uint64
		n               uint64
		reset           bool
	}{
		{100, 130, 65536, 30, false},
		{130, 130, 65536, 0, false},
		{65530, 5, 65536, 11, false}, // wrapped past 65535
		{5000, 3, 65536, 3, true},    // reset to 0, then 3 parts
		{4294967290, 4, 1 << 32, 10, false},
		{70, 2, 0, 2, true},        // no wrap known: a reset
		{70000, 2, 65536, 2, true}, // previous above the wrap: not a wrap
	}
	for _, c := range cases {
		n, reset := Increment(c.prev, c.cur, c.wrap)
		if n != c.n || reset != c.reset {
			t.Errorf("Increment(%d, %d, wrap %d) = %d, %v; want %d, %v", c.prev, c.cur, c.wrap, n, reset, c.n, c.reset)
		}
	}
}

// Properties over random days: the time categories add up to the window; A and Q are
// within [0, 1]; hours sum to the day.
func TestProperties(t *testing.T) {
	rng := rand.New(rand.NewPCG(1, 2))
	states := []schemas.StateCategory{schemas.StateRunning, schemas.StateRunning, schemas.StateStoppedUnplanned,
		schemas.StateSetup, schemas.StateIdle, schemas.StatePlannedDown, schemas.StateUnknown}
	for iter := range 200 {
		var in Input
		in.Window = Span{at(0, 0), at(24, 0)}
		in.IdealCycle = time.Duration(1+rng.IntN(5)) * time.Second
		in.MicroStopThreshold = time.Duration(rng.IntN(300)) * time.Second
		cur := at(0, 0).Add(-time.Duration(rng.IntN(3600)) * time.Second)
		for cur.Before(at(24, 0)) {
			d := time.Duration(1+rng.IntN(5400)) * time.Second
			if rng.IntN(10) == 0 { // a gap: no data
				cur = cur.Add(d)
				continue
			}
			in.States = append(in.States, StateInterval{Start: cur, End: cur.Add(d), State: states[rng.IntN(len(states))]})
			cur = cur.Add(d)
		}
		if rng.IntN(2) == 0 {
			in.Scheduled = []Span{{at(6, 0), at(14, 0)}, {at(14, 0), at(22, 0)}}
			in.PlannedStops = []Span{{at(9, 0), at(9, 15)}, {at(12, 0), at(12, 30)}, {at(18, 0), at(18, 30)}}
		}
		for range rng.IntN(50) {
			ts := at(0, 0).Add(time.Duration(rng.IntN(86400)) * time.Second)
			n := int64(rng.IntN(500))
			in.Counts = append(in.Counts, Count{TS: ts, Kind: schemas.CounterTotal, N: n}, Count{TS: ts, Kind: schemas.CounterScrap, N: int64(rng.IntN(int(n) + 1))})
		}
		r := Compute(in)
		if sum := r.PlannedS + r.PlannedDownS + r.NotScheduledS + r.UnknownS; math.Abs(sum-r.CalendarS) > 1e-6 || r.CalendarS != 86400 {
			t.Fatalf("iteration %d: times add up to %v of %v: %+v", iter, sum, r.CalendarS, r)
		}
		for name, v := range map[string]*float64{"availability": r.Availability, "quality": r.Quality} {
			if v != nil && (*v < 0 || *v > 1) {
				t.Fatalf("iteration %d: %s = %v", iter, name, *v)
			}
		}
		var hours []Result
		for h := range 24 {
			w := in
			w.Window = Span{at(h, 0), at(h+1, 0)}
			hours = append(hours, Compute(w))
		}
		s := Sum(hours...)
		if math.Abs(s.PlannedS-r.PlannedS) > 1e-6 || math.Abs(s.RunS-r.RunS) > 1e-6 || s.TotalCount != r.TotalCount || s.GoodCount != r.GoodCount {
			t.Fatalf("iteration %d: hours sum to planned %v run %v total %d, the day has %v %v %d", iter, s.PlannedS, s.RunS, s.TotalCount, r.PlannedS, r.RunS, r.TotalCount)
		}
		if (s.OEE == nil) != (r.OEE == nil) || (s.OEE != nil && math.Abs(*s.OEE-*r.OEE) > 1e-9) {
			t.Fatalf("iteration %d: OEE of hours %v, of the day %v", iter, s.OEE, r.OEE)
		}
	}
}
