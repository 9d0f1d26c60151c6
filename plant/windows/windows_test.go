package windows

import (
	"testing"
	"time"

	"takt.dev/plant/oee"
	"takt.dev/schemas"
)

func TestIntervalsMergeAndGap(t *testing.T) {
	t0 := time.Date(2026, 11, 25, 8, 0, 0, 0, time.UTC)
	obs := []oee.Observation{ // out of order, as they may arrive
		{TS: t0.Add(2 * time.Second), State: schemas.StateRunning},
		{TS: t0, State: schemas.StateRunning},
		{TS: t0.Add(time.Second), State: schemas.StateRunning},
		{TS: t0.Add(3 * time.Second), State: schemas.StateStoppedUnplanned, Reason: 7},
		{TS: t0.Add(10 * time.Minute), State: schemas.StateRunning}, // after a gap
	}
	got := oee.Intervals(obs, time.Minute, t0.Add(time.Hour))
	want := []oee.StateInterval{
		{Start: t0, End: t0.Add(3 * time.Second), State: schemas.StateRunning},
		{Start: t0.Add(3 * time.Second), End: t0.Add(3*time.Second + time.Minute), State: schemas.StateStoppedUnplanned, Reason: 7},
		{Start: t0.Add(10 * time.Minute), End: t0.Add(11 * time.Minute), State: schemas.StateRunning},
	}
	if len(got) != len(want) {
		t.Fatalf("intervals %+v", got)
	}
	for i := range want {
		if got[i] != want[i] {
			t.Fatalf("interval %d = %+v, want %+v", i, got[i], want[i])
		}
	}
}

func TestCountsWrapAndReset(t *testing.T) {
	t0 := time.Date(2026, 11, 25, 8, 0, 0, 0, time.UTC)
	rs := []Reading{
		{Tag: "total", Kind: schemas.CounterTotal, TS: t0.Add(2 * time.Second), Value: 3, Wrap: 65536}, // wrapped
		{Tag: "total", Kind: schemas.CounterTotal, TS: t0, Value: 65530, Wrap: 65536},
		{Tag: "total", Kind: schemas.CounterTotal, TS: t0.Add(time.Second), Value: 65534, Wrap: 65536},
		{Tag: "scrap", Kind: schemas.CounterScrap, TS: t0, Value: 900, Wrap: 65536},
		{Tag: "scrap", Kind: schemas.CounterScrap, TS: t0.Add(time.Second), Value: 2, Wrap: 65536}, // reset
	}
	var total, scrap int64
	for _, c := range Counts(rs) {
		if c.Kind == schemas.CounterTotal {
			total += c.N
		} else {
			scrap += c.N
		}
	}
	if total != 9 || scrap != 2 {
		t.Fatalf("total %d scrap %d, want 9 and 2", total, scrap)
	}
}

func TestDayInLocalTimeWithShifts(t *testing.T) {
	paris, err := time.LoadLocation("Europe/Paris")
	if err != nil {
		t.Fatal(err)
	}
	// 2026-03-29: the clocks go forward, the day has 23 hours.
	day := time.Date(2026, 3, 29, 12, 0, 0, 0, paris)
	eq := Equipment{IdealCycle: time.Second, MicroStopThreshold: time.Minute, Location: paris,
		Shifts: []Shift{{Name: "early", StartsAt: 6 * time.Hour, Duration: 8 * time.Hour,
			Weekdays: []time.Weekday{time.Sunday, time.Monday}, Breaks: []Break{{Offset: 4 * time.Hour, Duration: 30 * time.Minute}}}}}
	states := []oee.StateInterval{{Start: day.Add(-24 * time.Hour), End: day.Add(24 * time.Hour), State: schemas.StateRunning}}
	counts := []oee.Count{{TS: time.Date(2026, 3, 29, 9, 0, 0, 0, paris), Kind: schemas.CounterTotal, N: 3600}}
	ws := Day(eq, day, day.Add(48*time.Hour), states, counts)
	hours, shifts := 0, 0
	var d Window
	for _, w := range ws {
		switch w.Granularity {
		case "hour":
			hours++
		case "shift":
			shifts++
			if w.PlannedS != 7.5*3600 || w.PlannedDownS != 1800 {
				t.Errorf("shift planned %v planned down %v", w.PlannedS, w.PlannedDownS)
			}
		case "day":
			d = w
		}
	}
	if hours != 23 || shifts != 1 {
		t.Fatalf("%d hours and %d shifts on the spring-forward day", hours, shifts)
	}
	if d.CalendarS != 23*3600 || d.PlannedS != 7.5*3600 || d.TotalCount != 3600 {
		t.Fatalf("day calendar %v planned %v total %d", d.CalendarS, d.PlannedS, d.TotalCount)
	}
	if !d.Start.Equal(time.Date(2026, 3, 29, 0, 0, 0, 0, paris)) {
		t.Fatalf("day starts %v", d.Start)
	}
}
