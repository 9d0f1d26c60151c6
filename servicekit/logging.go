package servicekit

import (
	"fmt"
	"io"
	"log/slog"
	"runtime/debug"
	"strings"
)

// Logger builds a service's logger from the environment: TAKT_LOG_FORMAT text
// (default) or json, TAKT_LOG_LEVEL debug, info (default), warn or error. It is
// also made the default logger, so that every package's slog calls follow it.
func Logger(getenv func(string) string, w io.Writer) (*slog.Logger, error) {
	var level slog.Level
	switch v := strings.ToLower(getenv("TAKT_LOG_LEVEL")); v {
	case "", "info":
		level = slog.LevelInfo
	case "debug":
		level = slog.LevelDebug
	case "warn", "warning":
		level = slog.LevelWarn
	case "error":
		level = slog.LevelError
	default:
		return nil, fmt.Errorf("TAKT_LOG_LEVEL %q: want debug, info, warn or error", v)
	}
	opts := &slog.HandlerOptions{Level: level}
	var h slog.Handler
	switch v := strings.ToLower(getenv("TAKT_LOG_FORMAT")); v {
	case "", "text":
		h = slog.NewTextHandler(w, opts)
	case "json":
		h = slog.NewJSONHandler(w, opts)
	default:
		return nil, fmt.Errorf("TAKT_LOG_FORMAT %q: want text or json", v)
	}
	l := slog.New(h)
	slog.SetDefault(l)
	return l, nil
}

// Release and Revision, when the build sets them (go build -ldflags "-X
// takt.dev/servicekit.Release=0.1.0 -X takt.dev/servicekit.Revision=abc123", as
// takt-package does), name the build instead of what Go recorded.
var Release, Revision string

// Version says which build this is: the release and VCS revision the build was
// given, or else those Go recorded, and the Go version.
func Version() (version, revision, goVersion string) {
	version, revision, goVersion = "devel", "unknown", "unknown"
	defer func() {
		if Release != "" {
			version = Release
		}
		if Revision != "" {
			revision = Revision
		}
	}()
	bi, ok := debug.ReadBuildInfo()
	if !ok {
		return
	}
	goVersion = bi.GoVersion
	if v := bi.Main.Version; v != "" && v != "(devel)" {
		version = v
	}
	for _, s := range bi.Settings {
		switch s.Key {
		case "vcs.revision":
			revision = s.Value
		case "vcs.modified":
			if s.Value == "true" {
				revision += "+dirty"
			}
		}
	}
	return
}

// VersionLine is what --version prints: "takt-ingest devel (revision abc123, go1.26.8)".
func VersionLine(program string) string {
	v, r, g := Version()
	return fmt.Sprintf("%s %s (revision %s, %s)", program, v, r, g)
}
