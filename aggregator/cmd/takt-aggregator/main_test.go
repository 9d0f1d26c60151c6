package main

import (
	"context"
	"io"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

func TestConfigErrors(t *testing.T) {
	env := func(m map[string]string) func(string) string { return func(k string) string { return m[k] } }
	ok := map[string]string{"DATABASE_URL": "postgres://x@127.0.0.1/x", "TAKT_KAFKA_BROKERS": "127.0.0.1:9092"}
	if err := run(context.Background(), []string{"-c", "example.yaml", "validate"}, env(nil), io.Discard, io.Discard); err != nil {
		t.Fatalf("example.yaml: %v", err)
	}
	for _, f := range []string{"../../../deploy/kubernetes/base/config/aggregator.yaml", "../../../deploy/kubernetes/overlays/staging/config/aggregator.yaml"} {
		if err := run(context.Background(), []string{"-c", f, "validate"}, env(map[string]string{"DATABASE_URL": "postgres://x@db/takt"}), io.Discard, io.Discard); err != nil {
			t.Errorf("%s (as deployed on Kubernetes): %v", f, err)
		}
	}
	cases := []struct{ yaml, want string }{
		{"refresh_every: 100ms\n", "refresh_every 100ms: want 1s to 1h"},
		{"max_gap: 1m\n", "line 1: max_gap: unknown key"},
		{"batch_records: -1\n", "batch_records -1"},
		{"database_url: 'postgres://x@[::1'\n", "database_url"},
	}
	for _, c := range cases {
		f := filepath.Join(t.TempDir(), "a.yaml")
		os.WriteFile(f, []byte(c.yaml), 0o644)
		e := map[string]string{"TAKT_KAFKA_BROKERS": ok["TAKT_KAFKA_BROKERS"]}
		if !strings.HasPrefix(c.yaml, "database_url") {
			e["DATABASE_URL"] = ok["DATABASE_URL"]
		}
		err := run(context.Background(), []string{"-c", f, "validate"}, env(e), io.Discard, io.Discard)
		if err == nil || !strings.Contains(err.Error(), c.want) {
			t.Errorf("%q: err = %v, want %q", c.yaml, err, c.want)
		}
	}
	if err := run(context.Background(), []string{"validate"}, env(nil), io.Discard, io.Discard); err == nil || !strings.Contains(err.Error(), "database_url: missing") {
		t.Fatalf("no configuration: %v", err)
	}
}
