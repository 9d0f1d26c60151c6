package main

import (
	"bytes"
	"context"
	"crypto/sha256"
	"crypto/tls"
	"crypto/x509"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"

	"takt.dev/api/internal/server"
	"takt.dev/servicekit/pii"
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
		return map[string]string{"DATABASE_URL": db.URL, "TAKT_PII_KEYS": testkit.PIIKeys()}[k]
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
		return map[string]string{"DATABASE_URL": db.URL, "USER": "alice", "TAKT_PII_KEYS": testkit.PIIKeys()}[k]
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

	srv := httptest.NewServer(server.New(server.Deps{Primary: pool, Log: slog.New(slog.DiscardHandler), TokenCache: time.Millisecond, PII: testkit.PIIKeyring(t)}))
	defer srv.Close()
	call := caller(t, srv.URL, reader)
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
	keys := testkit.PIIKeyring(t)
	rows, _ := pool.Query(ctx, `SELECT tenant_id, actor, action, entity FROM audit_log ORDER BY id`)
	for rows.Next() {
		var tenant, actor, action, entity string
		rows.Scan(&tenant, &actor, &action, &entity)
		if !pii.Sealed(actor) {
			t.Fatalf("audit actor %q stored in clear", actor)
		}
		actor, err := keys.Open(pii.Place(server.ActorColumn, tenant), actor)
		if err != nil {
			t.Fatal(err)
		}
		ops = append(ops, actor+" "+action+" "+entity)
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
		"database_url: postgres://x@h/db\nrate_limit: {token: -5}\n":                  "rate_limit.token -5: want requests per second",
		"database_url: postgres://x@h/db\nanswer_cache: {max_bytes: 1000}\n":          "answer_cache.max_bytes 1000: want 1048576 (1 MiB)",
		"database_url: postgres://x@h/db\nanswer_cache: {max_bytes: -2}\n":            "answer_cache.max_bytes -2: want",
	} {
		os.WriteFile(f, []byte(yaml), 0o644)
		err := run(context.Background(), []string{"-c", f, "validate"}, func(string) string { return "" }, io.Discard, io.Discard)
		if err == nil || !strings.Contains(err.Error(), want) {
			t.Errorf("%q: %v, want %q", yaml, err, want)
		}
	}
	keys := func(k string) string { return map[string]string{"TAKT_PII_KEYS": testkit.PIIKeys()}[k] }
	if err := run(context.Background(), []string{"-c", "example.yaml", "validate"}, keys, io.Discard, io.Discard); err != nil {
		t.Fatalf("example.yaml: %v", err)
	}
	pod := func(k string) string {
		return map[string]string{"TAKT_PII_KEYS": testkit.PIIKeys(), "DATABASE_URL": "postgres://takt_api_login@db/takt"}[k]
	}
	for _, f := range []string{"../../../deploy/kubernetes/base/config/api.yaml", "../../../deploy/kubernetes/overlays/staging/config/api.yaml"} {
		if err := run(context.Background(), []string{"-c", f, "validate"}, pod, io.Discard, io.Discard); err != nil {
			t.Errorf("%s (as deployed on Kubernetes): %v", f, err)
		}
	}
	// Personal data is never stored in clear: no keys, no start, and the error says
	// where keys come from; a key list that does not parse names the entry.
	err := run(context.Background(), []string{"-c", "example.yaml", "validate"}, func(string) string { return "" }, io.Discard, io.Discard)
	if err == nil || !strings.Contains(err.Error(), "TAKT_PII_KEYS_FILE") {
		t.Fatalf("no PII keys: %v", err)
	}
	bad := func(k string) string { return map[string]string{"TAKT_PII_KEYS": "index:abc"}[k] }
	if err := run(context.Background(), []string{"-c", "example.yaml", "validate"}, bad, io.Discard, io.Discard); err == nil || !strings.Contains(err.Error(), `key "index": want 32 bytes`) {
		t.Fatalf("a bad key list: %v", err)
	}
}

// Personal data through the API and the CLI: a technician is sealed in its row and
// in the audit log, shown in clear by the API, found by equality through its
// lookup hash; `pii rotate` re-seals every row under a new key in batches, after
// which the old key can go (but for the append-only audit log, which pii status
// says still needs it).
func TestPersonalDataSealedFoundAndRotated(t *testing.T) {
	db := testkit.NewDatabase(t)
	pool := db.Pool(t)
	ctx := context.Background()
	testkit.RegisterLine(t, pool, "acme", "filler-1")
	k1 := testkit.PIIKeys()
	k2, _ := pii.Keygen("k2")
	idx := strings.Split(k1, ",")[0]
	cli := func(keys string, args ...string) (string, error) {
		var out bytes.Buffer
		env := map[string]string{"DATABASE_URL": db.URL, "USER": "alice", "TAKT_PII_KEYS": keys}
		err := run(ctx, args, func(k string) string { return env[k] }, &out, io.Discard)
		return out.String(), err
	}
	token, err := cli(k1, "token", "create", "-tenant", "acme", "-name", "planner", "-scope", "manage")
	if err != nil {
		t.Fatal(err)
	}
	serve := func(keys string) func(method, path, body string) (int, string) {
		k, err := pii.Parse(keys)
		if err != nil {
			t.Fatal(err)
		}
		ring, _ := pii.New(k)
		srv := httptest.NewServer(server.New(server.Deps{Primary: pool, Log: slog.New(slog.DiscardHandler), PII: ring}))
		t.Cleanup(srv.Close)
		return caller(t, srv.URL, strings.TrimSpace(token))
	}
	call := serve(k1)
	for i, who := range []string{"Jane Doe", "Bob Martin", "Jane Doe"} {
		body := fmt.Sprintf(`{"kind":"corrective","start":"2026-11-25T0%d:00:00Z","description":"seal","technician":%q}`, i+1, who)
		if code, out := call("POST", "/api/v1/equipment/filler-1/maintenance", body); code != 201 || !strings.Contains(out, who) {
			t.Fatalf("POST maintenance: %d %s", code, out)
		}
	}
	var stored, audited string
	pool.QueryRow(ctx, `SELECT string_agg(technician, ' ') FROM maintenance_event`).Scan(&stored)
	pool.QueryRow(ctx, `SELECT string_agg(actor || ' ' || coalesce(after::text, ''), ' ') FROM audit_log`).Scan(&audited)
	for _, clear := range []string{"Jane", "Bob", "alice"} {
		if strings.Contains(stored+audited, clear) {
			t.Fatalf("%q stored in clear: %s / %s", clear, stored, audited)
		}
	}
	const list = "/api/v1/equipment/filler-1/maintenance?from=2026-11-25T00:00:00Z&to=2026-11-26T00:00:00Z"
	for query, want := range map[string]int{"": 3, "&technician=jane%20doe": 2, "&technician=Bob%20Martin": 1, "&technician=Nobody": 0} {
		code, out := call("GET", list+query, "")
		if code != 200 || strings.Count(out, `"technician"`) != want {
			t.Fatalf("GET maintenance%s: %d %s, want %d events", query, code, out, want)
		}
	}
	// As a service's role, rotation would see one tenant's rows at best: refused.
	apiRole := db.Login(t, "IN ROLE takt_api")
	asAPI := *apiRole.Config().ConnConfig
	var out bytes.Buffer
	env := map[string]string{"DATABASE_URL": fmt.Sprintf("postgres://%s@%s:%d/%s?sslmode=disable", asAPI.User, asAPI.Host, asAPI.Port, asAPI.Database),
		"TAKT_PII_KEYS": k2 + "," + k1}
	if err := run(ctx, []string{"pii", "rotate"}, func(k string) string { return env[k] }, &out, io.Discard); err == nil || !strings.Contains(err.Error(), "as the tables' owner") {
		t.Fatalf("pii rotate as the API's role: %v", err)
	}
	// Rotation: k2 first (current), k1 still listed to open the old rows.
	if out, err := cli(k2+","+k1, "pii", "rotate", "-batch", "2"); err != nil || !strings.Contains(out, `maintenance_event.technician: 3 re-sealed under key "k2"`) ||
		!strings.Contains(out, `api_token.created_by: 1 re-sealed`) || !regexp.MustCompile(`audit_log.actor\s+k1 \(append-only`).MatchString(out) {
		t.Fatalf("pii rotate: %q %v", out, err)
	}
	var old int
	pool.QueryRow(ctx, `SELECT count(*) FROM maintenance_event WHERE technician NOT LIKE 'pii:v1:k2:%'`).Scan(&old)
	if old != 0 {
		t.Fatalf("%d technicians not under k2 after rotation", old)
	}
	// k1 removed: the rotated rows open, and equality search still finds them.
	call = serve(idx + "," + k2)
	if code, out := call("GET", list+"&technician=JANE%20DOE", ""); code != 200 || strings.Count(out, "Jane Doe") != 2 {
		t.Fatalf("after rotation without k1: %d %s", code, out)
	}
	if out, err := cli(idx+","+k2, "token", "list", "-tenant", "acme"); err != nil || !strings.Contains(out, "cli:alice") {
		t.Fatalf("token list after rotation without k1: %q %v", out, err)
	}
}

// With tls_cert_file and tls_key_file the API speaks HTTPS only, with HSTS; a
// plain HTTP client gets no answer, and half a pair is a configuration error.
func TestServesHTTPS(t *testing.T) {
	db := testkit.NewDatabase(t)
	pki, err := testkit.NewPKI(t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	port, _ := testkit.FreePort()
	addr := fmt.Sprintf("127.0.0.1:%d", port)
	cfg := filepath.Join(t.TempDir(), "api.yaml")
	os.WriteFile(cfg, []byte(fmt.Sprintf("tls_cert_file: %s\ntls_key_file: %s\n", pki.ServerCert, pki.ServerKey)), 0o644)
	env := map[string]string{"DATABASE_URL": db.URL, "TAKT_PII_KEYS": testkit.PIIKeys(), "TAKT_HTTP_ADDR": addr}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() {
		done <- run(ctx, []string{"-c", cfg, "serve"}, func(k string) string { return env[k] }, io.Discard, io.Discard)
	}()
	defer func() { cancel(); <-done }()
	caPEM, _ := os.ReadFile(pki.CA)
	roots := x509.NewCertPool()
	roots.AppendCertsFromPEM(caPEM)
	client := &http.Client{Transport: &http.Transport{TLSClientConfig: &tls.Config{RootCAs: roots}}, Timeout: 5 * time.Second}
	var resp *http.Response
	for deadline := time.Now().Add(10 * time.Second); ; time.Sleep(50 * time.Millisecond) {
		if resp, err = client.Get("https://" + addr + "/healthz"); err == nil || time.Now().After(deadline) {
			break
		}
	}
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != 200 || resp.Header.Get("Strict-Transport-Security") == "" {
		t.Fatalf("https /healthz: %d, HSTS %q", resp.StatusCode, resp.Header.Get("Strict-Transport-Security"))
	}
	if resp, err := (&http.Client{Timeout: 5 * time.Second}).Get("http://" + addr + "/healthz"); err == nil && resp.StatusCode == 200 {
		t.Fatal("plain HTTP answered 200 on the HTTPS port")
	}
	os.WriteFile(cfg, []byte(fmt.Sprintf("tls_cert_file: %s\n", pki.ServerCert)), 0o644)
	if err := run(context.Background(), []string{"-c", cfg, "validate"}, func(k string) string { return env[k] }, io.Discard, io.Discard); err == nil || !strings.Contains(err.Error(), "give both") {
		t.Fatalf("half a key pair: %v", err)
	}
}

// caller returns a function that calls the API at base with a bearer token and
// returns the status and the body.
func caller(t *testing.T, base, token string) func(method, path, body string) (int, string) {
	return func(method, path, body string) (int, string) {
		t.Helper()
		req, _ := http.NewRequest(method, base+path, strings.NewReader(body))
		req.Header.Set("Authorization", "Bearer "+token)
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		b, _ := io.ReadAll(resp.Body)
		return resp.StatusCode, string(b)
	}
}
