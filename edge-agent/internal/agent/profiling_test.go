package agent

import (
	"context"
	"os"
	"strings"
	"testing"

	"takt.dev/edge-agent/internal/config"
)

// A TAKT_PPROF the agent cannot read is refused before anything starts (no buffer
// directory is created), naming the variable and its value.
func TestBadProfilingSettingIsRefused(t *testing.T) {
	dir := t.TempDir() + "/buffer"
	cfg := &config.Config{Agent: config.Agent{ID: "gw", Tenant: "acme"}, Buffer: config.Buffer{Dir: dir}}
	err := Run(context.Background(), cfg, Options{Getenv: func(k string) string {
		if k == "TAKT_PPROF" {
			return "on"
		}
		return ""
	}})
	if err == nil || !strings.Contains(err.Error(), `TAKT_PPROF "on"`) {
		t.Fatalf("Run with TAKT_PPROF=on: %v", err)
	}
	if _, err := os.Stat(dir); !os.IsNotExist(err) {
		t.Fatalf("the buffer directory was made before the refusal: %v", err)
	}
}
