package servicekit

import (
	"fmt"
	"net/http"
	"net/http/pprof"
	"strings"
)

// Profiling serves Go's runtime profiles (net/http/pprof: /debug/pprof/, profile,
// heap, goroutine, trace...) on mux when TAKT_PPROF is 1 or true, and says whether it
// did. Off by default: a profile shows the program's insides, so it belongs on the
// internal metrics listener only, turned on while someone looks (as Telegraf's
// --pprof-addr).
func Profiling(mux *http.ServeMux, getenv func(string) string) (bool, error) {
	switch v := strings.ToLower(getenv("TAKT_PPROF")); v {
	case "", "0", "false":
		return false, nil
	case "1", "true":
	default:
		return false, fmt.Errorf("TAKT_PPROF %q: want 1 or true (on), 0 or false (off)", v)
	}
	mux.HandleFunc("GET /debug/pprof/", pprof.Index)
	mux.HandleFunc("GET /debug/pprof/cmdline", pprof.Cmdline)
	mux.HandleFunc("GET /debug/pprof/profile", pprof.Profile)
	mux.HandleFunc("GET /debug/pprof/symbol", pprof.Symbol)
	mux.HandleFunc("GET /debug/pprof/trace", pprof.Trace)
	return true, nil
}
