package server

import (
	"encoding/json"
	"io"
	"net/http"
	"net/http/httptest"
	"net/url"
	"strings"
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

// bodyRoutes are the calls that take a JSON body, with a valid body each as a seed.
var bodyRoutes = []struct{ method, path, seed string }{
	{"POST", "/api/v1/sites", `{"code":"paris","name":"Paris","time_zone":"Europe/Paris"}`},
	{"PATCH", "/api/v1/sites/lyon", `{"name":"Lyon 2"}`},
	{"POST", "/api/v1/sites/lyon/shifts", `{"name":"early","starts_at":"06:00","duration":"08:00:00","breaks":[{"name":"lunch","offset":"4h","duration":"00:30:00"}],"valid_from":"2026-11-20"}`},
	{"POST", "/api/v1/reasons", `{"code":101,"name":"Jam at the infeed","category":"breakdown"}`},
	{"PATCH", "/api/v1/reasons/101", `{"name":"Jam"}`},
	{"POST", "/api/v1/equipment/filler-1/runs", `{"product":"cola","start":"2026-11-25T06:00:00Z","end":"2026-11-25T09:00:00Z","order_id":"PO-1"}`},
	{"PATCH", "/api/v1/equipment/filler-1/runs/1", `{"end":null}`},
	{"POST", "/api/v1/equipment/filler-1/maintenance", `{"kind":"corrective","start":"2026-11-25T06:05:00Z","end":"2026-11-25T06:20:00Z","description":"cleared the jam","technician":"M. Curie"}`},
	{"PATCH", "/api/v1/equipment/filler-1/maintenance/1", `{"end":"2026-11-25T06:30:00Z"}`},
	{"POST", "/api/v1/lines", `{"area":"pack","code":"line-2","name":"L2"}`},
	{"PATCH", "/api/v1/lines/line-1", `{"name":"Line one"}`},
	{"POST", "/api/v1/products", `{"code":"cola","name":"Cola","ideal_cycle_time_s":0.5}`},
	{"PATCH", "/api/v1/products/cola", `{"ideal_cycle_time_s":0.4}`},
	{"POST", "/api/v1/equipment", `{"work_center":"wc","code":"labeler-1","name":"Labeler","ideal_cycle_time_s":1}`},
	{"PATCH", "/api/v1/equipment/filler-1", `{"ideal_cycle_time_s":0.9,"micro_stop_threshold_s":60}`},
	{"POST", "/api/v1/equipment/capper-1/planned-stops", `{"start":"2026-11-25T10:00:00Z","end":"2026-11-25T10:30:00Z","reason":"cleaning"}`},
	{"PATCH", "/api/v1/equipment/capper-1/planned-stops/1", `{"end":"2026-11-25T10:45:00Z"}`},
}

// FuzzBodies sends request bodies to every call that takes one, against the real
// server and database: whatever the body, the answer is a success or a 4xx whose
// JSON error names what was wrong, never a 500 (an error the server did not
// classify) or a dropped connection.
func FuzzBodies(f *testing.F) {
	pool := fixture(f)
	_, ts := newServer(f, pool)
	for i, r := range bodyRoutes {
		f.Add(uint8(i), r.seed)
		f.Add(uint8(i), `{"name":"`+strings.Repeat("x", 70_000)+`"}`)
		f.Add(uint8(i), `{"code":"a\u0000b","name":"\ud800","ideal_cycle_time_s":1e400,"start":"0000-01-01T00:00:00Z"}`)
		f.Add(uint8(i), `[{"code":1}]`)
	}
	f.Fuzz(func(t *testing.T, route uint8, body string) {
		r := bodyRoutes[int(route)%len(bodyRoutes)]
		req, _ := http.NewRequest(r.method, ts.URL+r.path, strings.NewReader(body))
		req.Header.Set("Authorization", "Bearer tok-a")
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatalf("%s %s with %q: %v", r.method, r.path, body, err)
		}
		defer resp.Body.Close()
		b, _ := io.ReadAll(resp.Body)
		if resp.StatusCode >= 500 {
			t.Fatalf("%s %s with %q: %d %s", r.method, r.path, body, resp.StatusCode, b)
		}
		if resp.StatusCode >= 400 {
			var e struct {
				Error struct{ Code, Message string }
			}
			if json.Unmarshal(b, &e) != nil || e.Error.Code == "" || e.Error.Message == "" {
				t.Fatalf("%s %s with %q: %d without a JSON error naming the fault: %s", r.method, r.path, body, resp.StatusCode, b)
			}
		}
	})
}
