package oee

import (
	"testing"
	"time"

	"takt.dev/schemas"
)

// FuzzComputeNanoseconds: states, planned stops and windows at any nanosecond never
// give a negative time or a coverage outside [0, 1].
func FuzzComputeNanoseconds(f *testing.F) {
	f.Add(int64(0), int64(1), int64(333333333), uint8(1), int64(999999999), uint8(3), int64(7))
	f.Add(int64(123), int64(3600e9), int64(1), uint8(0), int64(2), uint8(6), int64(-5))
	f.Fuzz(func(t *testing.T, w0, wLen, t1 int64, s1 uint8, t2 int64, s2 uint8, stop int64) {
		base := time.Date(2026, 11, 25, 6, 0, 0, 0, time.UTC)
		wLen = max(wLen%(48*int64(time.Hour)), 1)
		win := Span{base.Add(time.Duration(w0 % int64(time.Hour))), base.Add(time.Duration(w0%int64(time.Hour) + wLen))}
		obs := []Observation{
			{TS: base.Add(time.Duration(t1 % (50 * int64(time.Hour)))), State: schemas.StateCategory(s1 % 7)},
			{TS: base.Add(time.Duration(t2 % (50 * int64(time.Hour)))), State: schemas.StateCategory(s2 % 7)},
		}
		until := base.Add(60 * time.Hour)
		ps := base.Add(time.Duration(stop % (50 * int64(time.Hour))))
		r := Compute(Input{Window: win, Now: until, States: Intervals(obs, 0, until), MicroStopThreshold: time.Second,
			PlannedStops: []Span{{ps, ps.Add(17 * time.Minute)}}, Scheduled: []Span{{base.Add(time.Hour), base.Add(9 * time.Hour)}}})
		for name, v := range map[string]float64{"run": r.RunS, "planned": r.PlannedS, "unknown": r.UnknownS, "planned down": r.PlannedDownS,
			"not scheduled": r.NotScheduledS, "scheduled": r.ScheduledS, "breakdown": r.BreakdownS, "setup": r.SetupS, "idle": r.IdleS} {
			if v < 0 {
				t.Fatalf("%s = %g s", name, v)
			}
		}
		if r.Coverage != nil && (*r.Coverage < 0 || *r.Coverage > 1) {
			t.Fatalf("coverage %v", *r.Coverage)
		}
	})
}
