package servicekit

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

func TestReferencesKeepSecretsOutOfTheFile(t *testing.T) {
	dir := t.TempDir()
	secret := filepath.Join(dir, "db")
	os.WriteFile(secret, []byte("s3cr3t\n"), 0o600)
	t.Setenv("TAKT_TEST_USER", "takt")
	t.Setenv("TAKT_TEST_WAIT", "750ms")
	var cfg struct {
		URL  string        `yaml:"url"`
		Wait time.Duration `yaml:"wait"`
		Note string        `yaml:"note"`
		List []string      `yaml:"list"`
	}
	err := DecodeYAML([]byte("url: postgres://${TAKT_TEST_USER}:${file:"+secret+"}@db/takt\nwait: ${TAKT_TEST_WAIT}\nnote: costs $${PRICE}\nlist: [a, '${TAKT_TEST_USER}']\n"), &cfg)
	if err != nil {
		t.Fatal(err)
	}
	if cfg.URL != "postgres://takt:s3cr3t@db/takt" || cfg.Wait != 750*time.Millisecond || cfg.Note != "costs ${PRICE}" || cfg.List[1] != "takt" {
		t.Fatalf("decoded %+v", cfg)
	}
	err = DecodeYAML([]byte("url: ${TAKT_TEST_UNSET_VARIABLE}\nnote: ${file:"+filepath.Join(dir, "missing")+"}\n"), &cfg)
	for _, want := range []string{"line 1: url: ${TAKT_TEST_UNSET_VARIABLE}: the environment variable is not set", "line 2: note: ${file:"} {
		if err == nil || !strings.Contains(err.Error(), want) {
			t.Errorf("err = %v, want %q", err, want)
		}
	}
	getenv := func(k string) string { return map[string]string{"DATABASE_URL_FILE": secret}[k] }
	if v, err := Env(getenv, "DATABASE_URL"); err != nil || v != "s3cr3t" {
		t.Fatalf("DATABASE_URL_FILE: %q %v", v, err)
	}
	if _, err := Env(func(k string) string { return map[string]string{"X_FILE": "/nonexistent"}[k] }, "X"); err == nil || !strings.Contains(err.Error(), "X_FILE") {
		t.Fatalf("a missing _FILE: %v", err)
	}
}
