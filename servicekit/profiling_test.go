package servicekit

import (
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
)

func TestProfilingOnlyWhenAsked(t *testing.T) {
	for v, want := range map[string]int{"": 404, "0": 404, "1": 200, "true": 200} {
		mux := http.NewServeMux()
		if _, err := Profiling(mux, func(string) string { return v }); err != nil {
			t.Fatal(err)
		}
		rec := httptest.NewRecorder()
		mux.ServeHTTP(rec, httptest.NewRequest("GET", "/debug/pprof/heap?debug=1", nil))
		if rec.Code != want {
			t.Errorf("TAKT_PPROF=%q: /debug/pprof/heap answered %d, want %d", v, rec.Code, want)
		}
	}
	if _, err := Profiling(http.NewServeMux(), func(string) string { return "yes" }); err == nil || !strings.Contains(err.Error(), `TAKT_PPROF "yes"`) {
		t.Errorf("TAKT_PPROF=yes: %v", err)
	}
}
