package servicekit

import (
	"bytes"
	"encoding/json"
	"log/slog"
	"strings"
	"testing"
)

func TestLoggerFromTheEnvironment(t *testing.T) {
	defer slog.SetDefault(slog.Default())
	var buf bytes.Buffer
	env := map[string]string{"TAKT_LOG_FORMAT": "json", "TAKT_LOG_LEVEL": "warn"}
	l, err := Logger(func(k string) string { return env[k] }, &buf)
	if err != nil {
		t.Fatal(err)
	}
	l.Info("hidden")
	slog.Warn("shown", "k", 1) // the default follows
	var m map[string]any
	if err := json.Unmarshal(buf.Bytes(), &m); err != nil || m["msg"] != "shown" || strings.Contains(buf.String(), "hidden") {
		t.Fatalf("json at warn: %q (%v)", buf.String(), err)
	}
	for k, v := range map[string]string{"TAKT_LOG_FORMAT": "xml", "TAKT_LOG_LEVEL": "loud"} {
		if _, err := Logger(func(key string) string { return map[string]string{k: v}[key] }, &buf); err == nil || !strings.Contains(err.Error(), k) {
			t.Errorf("%s=%s: %v", k, v, err)
		}
	}
	if line := VersionLine("takt-x"); !strings.HasPrefix(line, "takt-x ") || !strings.Contains(line, "go") {
		t.Fatalf("version line %q", line)
	}
}
