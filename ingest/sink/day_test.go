package sink

import (
	"testing"
	"time"
)

func TestUnixDayMatchesTheUTCDate(t *testing.T) {
	for _, ts := range []time.Time{
		time.Date(2026, 11, 25, 0, 0, 0, 0, time.UTC),
		time.Date(2026, 11, 25, 23, 59, 59, 999999999, time.UTC),
		time.Date(2026, 11, 26, 0, 30, 0, 0, time.FixedZone("CET", 3600)), // 2026-11-25 in UTC
		time.Date(1969, 12, 31, 12, 0, 0, 0, time.UTC),
		time.Date(1970, 1, 1, 0, 0, 0, 0, time.UTC),
	} {
		got := time.Unix(unixDay(ts)*86400, 0).UTC().Format(time.DateOnly)
		if want := ts.UTC().Format(time.DateOnly); got != want {
			t.Errorf("%v: day %s, want %s", ts, got, want)
		}
	}
}
