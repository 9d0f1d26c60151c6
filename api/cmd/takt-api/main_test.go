package main

import (
	"bytes"
	"context"
	"crypto/sha256"
	"io"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"takt.dev/testkit"
)

func TestMain(m *testing.M) { testkit.Main(m) }

func TestTokenCreate(t *testing.T) {
	db := testkit.NewDatabase(t)
	pool := db.Pool(t)
	if _, err := pool.Exec(context.Background(), `INSERT INTO tenant VALUES ('acme', 'Acme')`); err != nil {
		t.Fatal(err)
	}
	env := func(k string) string {
		if k == "DATABASE_URL" {
			return db.URL
		}
		return ""
	}
	var out bytes.Buffer
	if err := run(context.Background(), []string{"token", "create", "-tenant", "acme", "-name", "dashboard"}, env, &out, io.Discard); err != nil {
		t.Fatal(err)
	}
	token := strings.TrimSpace(out.String())
	sum := sha256.Sum256([]byte(token))
	var tenant string
	if err := pool.QueryRow(context.Background(), `SELECT tenant_id FROM api_token WHERE token_hash = $1`, sum[:]).Scan(&tenant); err != nil || tenant != "acme" {
		t.Fatalf("stored hash not found for the printed token: %v", err)
	}
	var n int
	pool.QueryRow(context.Background(), `SELECT count(*) FROM api_token WHERE token_hash = convert_to($1, 'UTF8')`, token).Scan(&n)
	if n != 0 {
		t.Fatal("the token itself is stored")
	}
	err := run(context.Background(), []string{"token", "create", "-tenant", "nobody", "-name", "x"}, env, io.Discard, io.Discard)
	if err == nil || !strings.Contains(err.Error(), `tenant "nobody" does not exist`) {
		t.Fatalf("unknown tenant: %v", err)
	}
}

func TestConfigErrors(t *testing.T) {
	f := filepath.Join(t.TempDir(), "api.yaml")
	for yaml, want := range map[string]string{

		"database_url: postgres://x@h/db\nread_replica_urls: ['postgres://x@[::1']\n": "read_replica_urls[0]",
		"databse_url: postgres://x@h/db\n":                                            "line 1: databse_url: unknown key (did you mean \"database_url\"?)",
		"http_addr: 127.0.0.1:8080\n":                                                 "database_url: missing",
	} {
		os.WriteFile(f, []byte(yaml), 0o644)
		err := run(context.Background(), []string{"-c", f, "validate"}, func(string) string { return "" }, io.Discard, io.Discard)
		if err == nil || !strings.Contains(err.Error(), want) {
			t.Errorf("%q: %v, want %q", yaml, err, want)
		}
	}
	if err := run(context.Background(), []string{"-c", "example.yaml", "validate"}, func(string) string { return "" }, io.Discard, io.Discard); err != nil {
		t.Fatalf("example.yaml: %v", err)
	}
}
