package server

import (
	"net/http/httptest"
	"net/url"
	"testing"
)

// FuzzParameters: the query parameters and durations a client sends are accepted or
// refused with a named parameter, never a panic; what is accepted holds its promise.
func FuzzParameters(f *testing.F) {
	f.Add("2026-11-25T06:00:00Z", "2026-11-25T08:00:00Z", "hour", "08:00:00")
	f.Add("2026-11-25T06:00:00.123456789+01:00", "9999-12-31T23:59:59Z", "shift", "8h30m")
	f.Add("", "x", "week", "99:99:99")
	f.Add("0001-01-01T00:00:00Z", "0001-01-01T00:00:00Z", "", "-1:00:00")
	f.Fuzz(func(t *testing.T, from, to, bucket, duration string) {
		q := url.Values{"from": {from}, "to": {to}, "bucket": {bucket}}
		r := httptest.NewRequest("GET", "/api/v1/x?"+q.Encode(), nil)
		if f, tt, err := rangeParams(r); err == nil {
			if !tt.After(f) || tt.Sub(f) > maxRange {
				t.Fatalf("accepted the range %s to %s", f, tt)
			}
		} else if _, ok := err.(*apiError); !ok {
			t.Fatalf("error %T, want *apiError", err)
		}
		if b, err := bucketParam(r); err == nil && b != "hour" && b != "shift" && b != "day" {
			t.Fatalf("accepted bucket %q", b)
		}
		if d, err := parseDuration(duration); err == nil && d < 0 && duration != "" && duration[0] != '-' {
			t.Fatalf("%q parsed to %s", duration, d)
		}
	})
}
