// Package plant_test guards the layering of the workspace around the plant domain.
package plant_test

import (
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
)

// deps lists the packages pkgs depend on, with go list, in the workspace.
func deps(t *testing.T, dir string, pkgs ...string) map[string]bool {
	t.Helper()
	cmd := exec.Command("go", append([]string{"list", "-deps", "-test=false"}, pkgs...)...)
	cmd.Dir = dir
	out, err := cmd.CombinedOutput()
	if err != nil {
		t.Fatalf("go list -deps %v: %v\n%s", pkgs, err, out)
	}
	m := map[string]bool{}
	for _, l := range strings.Fields(string(out)) {
		m[l] = true
	}
	return m
}

// The plant module owns the domain: the services are adapters over it and never
// over each other; its pure packages import nothing but the standard library and
// the wire contract; none of it knows MQTT or Kafka.
func TestLayering(t *testing.T) {
	root, _ := filepath.Abs("..")
	for _, c := range []struct {
		dir, pkgs string
		banned    []string
	}{
		{"api", "./...", []string{"takt.dev/aggregator", "takt.dev/ingest", "takt.dev/edge-agent", "github.com/segmentio/kafka-go"}},
		{"aggregator", "./...", []string{"takt.dev/api", "takt.dev/ingest", "takt.dev/edge-agent"}},
		{"plant", "./...", []string{"takt.dev/aggregator", "takt.dev/api", "takt.dev/ingest", "github.com/segmentio/kafka-go", "github.com/eclipse/paho.mqtt.golang"}},
	} {
		for d := range deps(t, filepath.Join(root, c.dir), c.pkgs) {
			for _, b := range c.banned {
				if d == b || strings.HasPrefix(d, b+"/") {
					t.Errorf("%s depends on %s", c.dir, d)
				}
			}
		}
	}
	for _, pure := range []string{"./oee", "./windows"} {
		for d := range deps(t, filepath.Join(root, "plant"), pure) {
			if strings.Contains(strings.Split(d, "/")[0], ".") && d != "takt.dev/schemas" && !strings.HasPrefix(d, "takt.dev/plant/") {
				t.Errorf("plant/%s is pure, but depends on %s", pure[2:], d)
			}
		}
	}
}

// The SQL against the tables OEE is computed from and written to is written once,
// in plant/store: no other package of a service names them.
func TestOnlyPlantStoreQueriesTheOEETables(t *testing.T) {
	root, _ := filepath.Abs("..")
	tables := regexp.MustCompile(`\b(FROM|INTO|UPDATE|JOIN)\s+(oee_window|oee_dirty|state_observation|counter_reading)\b`)
	for _, mod := range []string{"api", "aggregator", "ingest", "edge-agent"} {
		filepath.WalkDir(filepath.Join(root, mod), func(p string, d os.DirEntry, err error) error {
			if err != nil || d.IsDir() || !strings.HasSuffix(p, ".go") || strings.HasSuffix(p, "_test.go") {
				return err
			}
			b, _ := os.ReadFile(p)
			if m := tables.Find(b); m != nil {
				rel, _ := filepath.Rel(root, p)
				t.Errorf("%s: %q: this SQL belongs in plant/store", rel, m)
			}
			return nil
		})
	}
}
