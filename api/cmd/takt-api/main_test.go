package main

import (
	"bytes"
	"context"
	"crypto/sha256"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"takt.dev/api/internal/server"
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

// The Done-when of scoped tokens, through the CLI and the API over HTTP: a read
// token reads OEE and gets 403 on a change; revoked, it gets 401; every token and
// tenant operation is in the audit log.
func TestTokensAndTenants(t *testing.T) {
	db := testkit.NewDatabase(t)
	pool := db.Pool(t)
	ctx := context.Background()
	env := func(k string) string {
		return map[string]string{"DATABASE_URL": db.URL, "USER": "alice"}[k]
	}
	cli := func(args ...string) (string, error) {
		var out bytes.Buffer
		err := run(ctx, args, env, &out, io.Discard)
		return out.String(), err
	}
	if out, err := cli("tenant", "create", "-id", "acme", "-name", "Acme Inc."); err != nil || !strings.Contains(out, "created tenant acme") {
		t.Fatalf("tenant create: %q %v", out, err)
	}
	if _, err := cli("tenant", "create", "-id", "acme", "-name", "again"); err == nil || !strings.Contains(err.Error(), "exists already") {
		t.Fatalf("second tenant create: %v", err)
	}
	if _, err := cli("tenant", "create", "-id", "a/b", "-name", "x"); err == nil || !strings.Contains(err.Error(), "-id \"a/b\"") {
		t.Fatalf("bad tenant id: %v", err)
	}
	if out, err := cli("tenant", "list"); err != nil || !strings.Contains(out, "acme") || !strings.Contains(out, "Acme Inc.") {
		t.Fatalf("tenant list: %q %v", out, err)
	}
	if _, err := cli("token", "create", "-tenant", "acme", "-name", "x", "-scope", "root"); err == nil || !strings.Contains(err.Error(), `scope "root"`) {
		t.Fatalf("bad scope: %v", err)
	}
	reader, err := cli("token", "create", "-tenant", "acme", "-name", "wallboard", "-scope", "read", "-expires", "1h")
	if err != nil {
		t.Fatal(err)
	}
	reader = strings.TrimSpace(reader)

	srv := httptest.NewServer(server.New(server.Deps{Primary: pool, Log: slog.New(slog.DiscardHandler), TokenCache: time.Millisecond}))
	defer srv.Close()
	call := func(method, path, body string) (int, string) {
		req, _ := http.NewRequest(method, srv.URL+path, strings.NewReader(body))
		req.Header.Set("Authorization", "Bearer "+reader)
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		b, _ := io.ReadAll(resp.Body)
		return resp.StatusCode, string(b)
	}
	if code, body := call("GET", "/api/v1/sites/lyon/oee?bucket=day&from=2026-11-25T00:00:00Z&to=2026-11-26T00:00:00Z", ""); code != 404 || !strings.Contains(body, "lyon") {
		t.Fatalf("read token reading OEE (of a site that does not exist yet): %d %s", code, body)
	}
	if code, _ := call("GET", "/api/v1/equipment", ""); code != 200 {
		t.Fatalf("read token listing equipment: %d", code)
	}
	if code, body := call("POST", "/api/v1/equipment", `{"code":"x","name":"x","line":"l"}`); code != 403 || !strings.Contains(body, "needs manage") {
		t.Fatalf("read token changing master data: %d %s", code, body)
	}
	list, err := cli("token", "list", "-tenant", "acme")
	if err != nil || !strings.Contains(list, "wallboard") || !strings.Contains(list, "read") || !strings.Contains(list, "cli:alice") || strings.Contains(list, reader) {
		t.Fatalf("token list: %q %v", list, err)
	}
	if out, err := cli("token", "revoke", "-tenant", "acme", "-id", "1"); err != nil || !strings.Contains(out, "revoked token 1 (wallboard)") {
		t.Fatalf("token revoke: %q %v", out, err)
	}
	time.Sleep(5 * time.Millisecond) // past the server's token cache
	if code, _ := call("GET", "/api/v1/equipment", ""); code != 401 {
		t.Fatalf("revoked token: %d, want 401", code)
	}
	if _, err := cli("token", "revoke", "-tenant", "acme", "-id", "9"); err == nil || !strings.Contains(err.Error(), "no token 9") {
		t.Fatalf("revoking a token that does not exist: %v", err)
	}
	var ops []string
	rows, _ := pool.Query(ctx, `SELECT actor || ' ' || action || ' ' || entity FROM audit_log ORDER BY id`)
	for rows.Next() {
		var op string
		rows.Scan(&op)
		ops = append(ops, op)
	}
	if strings.Join(ops, "; ") != "cli:alice insert tenant; cli:alice insert api_token; cli:alice update api_token" {
		t.Fatalf("audit log: %q", ops)
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
