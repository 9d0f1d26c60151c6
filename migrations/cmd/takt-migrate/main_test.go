package main

import (
	"bytes"
	"context"
	"path/filepath"
	"strings"
	"testing"

	"takt.dev/migrations"
	"takt.dev/testkit"
)

func TestMain(m *testing.M) { testkit.Main(m) }

func TestCommands(t *testing.T) {
	d := testkit.NewEmptyDatabase(t)
	env := func(k string) string {
		if k == "DATABASE_URL" {
			return d.URL
		}
		return ""
	}
	cmd := func(args ...string) (string, error) {
		var out, errOut bytes.Buffer
		err := run(context.Background(), args, env, &out, &errOut)
		return out.String() + errOut.String(), err
	}
	steps := []struct {
		args    []string
		want    string
		wantErr string
	}{
		{[]string{"status"}, "pending", ""},
		{[]string{"up"}, "applied 00023_oee_changed.sql", ""},
		{[]string{"up"}, "up to date", ""},
		{[]string{"status"}, "applied 20", ""},
		{[]string{"partitions", "-ahead", "3"}, "created 3 partition(s)", ""},
		{[]string{"partitions", "-ahead", "3", "-retention", "30"}, "moved 0 row(s) of 0 day(s) out of the default partition", ""},
		{[]string{"down"}, "rolled back 00023_oee_changed.sql", ""},
		{[]string{"partitions", "-ahead", "0"}, "", "-ahead 0: want 1 to 3660"},
		{[]string{"partitions", "-move-batch", "-1"}, "", "-move-batch -1: want 0 (do not move) to 1000000"},
		{[]string{"-lock-timeout", "-1s", "up"}, "", "-lock-timeout -1s"},
		{[]string{"sideways"}, "", `unknown command "sideways"`},
		{nil, "", "no command given"},
		{[]string{"up", "extra"}, "", `unexpected arguments`},
	}
	for _, s := range steps {
		out, err := cmd(s.args...)
		if s.wantErr != "" {
			if err == nil || !strings.Contains(err.Error(), s.wantErr) {
				t.Fatalf("takt-migrate %v: err = %v, want %q", s.args, err, s.wantErr)
			}
			continue
		}
		if err != nil {
			t.Fatalf("takt-migrate %v: %v\n%s", s.args, err, out)
		}
		if !strings.Contains(out, s.want) {
			t.Fatalf("takt-migrate %v printed:\n%s\nwant it to contain %q", s.args, out, s.want)
		}
	}
	if err := run(context.Background(), []string{"status"}, func(string) string { return "" }, &bytes.Buffer{}, &bytes.Buffer{}); err == nil || !strings.Contains(err.Error(), "DATABASE_URL") {
		t.Fatalf("without DATABASE_URL: %v", err)
	}
}

// The audit log is a hash chain across tenants (the API writes as takt_app, which
// sees only its tenant): a changed entry, a removed one, and the head are told.
func TestAuditVerify(t *testing.T) {
	for _, tamper := range []struct{ sql, want string }{
		{"", "audit log intact: 4 entries, head hash "},
		{`UPDATE audit_log SET after = '{"ideal_cycle_time_s": 0.1}' WHERE chain_seq = 2`, "audit log broken at entry 2 (id 2): changed after it was written"},
		{`DELETE FROM audit_log WHERE chain_seq = 3`, "audit log broken at entry 4 (id 4): the entries before it are missing"},
		{`UPDATE audit_log SET hash = sha256(hash) WHERE chain_seq = 1`, "audit log broken at entry 1 (id 1): changed after it was written"},
	} {
		d := testkit.NewDatabase(t)
		pool := d.Pool(t)
		ctx := context.Background()
		for _, q := range []string{
			`INSERT INTO tenant VALUES ('a', 'A'), ('b', 'B')`,
			`INSERT INTO audit_log (tenant_id, actor, action, entity, entity_id, after) VALUES ('a', 'cli:alice', 'insert', 'tenant', 'a', '{"name": "A"}')`,
		} {
			if _, err := pool.Exec(ctx, q); err != nil {
				t.Fatal(err)
			}
		}
		for _, tn := range []string{"a", "b", "a"} { // as the API writes: takt_app, one tenant visible
			tx, err := pool.Begin(ctx)
			if err != nil {
				t.Fatal(err)
			}
			// On a failure below, the transaction gives its connection back before the
			// pool closes (which would wait for it forever).
			t.Cleanup(func() { tx.Rollback(context.Background()) })
			if _, err := tx.Exec(ctx, `SELECT set_config('role', 'takt_app', true), set_config('app.tenant', $1, true)`, tn); err != nil {
				t.Fatal(err)
			}
			if _, err := tx.Exec(ctx, `INSERT INTO audit_log (tenant_id, actor, action, entity, entity_id, after)
				VALUES ($1, 'token:x', 'update', 'equipment', 'filler-1', '{"ideal_cycle_time_s": 0.9}')`, tn); err != nil {
				t.Fatal(err)
			}
			if err := tx.Commit(ctx); err != nil {
				t.Fatal(err)
			}
		}
		if tamper.sql != "" {
			// The owner can lift the append-only trigger; the chain still tells.
			if _, err := pool.Exec(ctx, `ALTER TABLE audit_log DISABLE TRIGGER audit_log_no_update_delete`); err != nil {
				t.Fatal(err)
			}
			if _, err := pool.Exec(ctx, tamper.sql); err != nil {
				t.Fatal(err)
			}
		}
		var out bytes.Buffer
		err := run(ctx, []string{"audit-verify"}, func(k string) string { return map[string]string{"DATABASE_URL": d.URL}[k] }, &out, &bytes.Buffer{})
		got := out.String()
		if err != nil {
			got = err.Error()
		}
		if !strings.Contains(got, tamper.want) {
			t.Errorf("after %q: %q, want %q", tamper.sql, got, tamper.want)
		}
	}
}

// Entries written before the chain existed are chained, in order, by its migration.
func TestAuditChainBackfill(t *testing.T) {
	d := testkit.NewEmptyDatabase(t)
	ctx := context.Background()
	db, err := migrations.Open(d.URL)
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	p, err := migrations.NewProvider(db)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := p.UpTo(ctx, 16); err != nil {
		t.Fatal(err)
	}
	for _, q := range []string{`INSERT INTO tenant VALUES ('a', 'A')`,
		`INSERT INTO audit_log (tenant_id, actor, action, entity, entity_id) VALUES ('a', 'x', 'insert', 'tenant', 'a'), ('a', 'y', 'update', 'tenant', 'a')`} {
		if _, err := db.ExecContext(ctx, q); err != nil {
			t.Fatal(err)
		}
	}
	if _, err := p.Up(ctx); err != nil {
		t.Fatal(err)
	}
	if _, err := db.ExecContext(ctx, `INSERT INTO audit_log (tenant_id, actor, action, entity, entity_id) VALUES ('a', 'z', 'delete', 'tenant', 'a')`); err != nil {
		t.Fatal(err)
	}
	n, head, err := migrations.VerifyAudit(ctx, db)
	if err != nil || n != 3 || len(head) != 64 {
		t.Fatalf("after the backfill: %d entries, head %q, %v", n, head, err)
	}
}

// DATABASE_URL with sslmode=verify-full: the migrations run over TLS against the
// cluster's authority, and are refused against another.
func TestVerifyFullTLS(t *testing.T) {
	url, pki := testkit.PostgresTLS(t)
	var out bytes.Buffer
	if err := run(context.Background(), []string{"-database", url, "up"}, func(string) string { return "" }, &out, &bytes.Buffer{}); err != nil || !strings.Contains(out.String(), "applied") {
		t.Fatalf("up over verify-full TLS: %v\n%s", err, out.String())
	}
	other, err := testkit.NewPKI(filepath.Join(t.TempDir(), "other"))
	if err != nil {
		t.Fatal(err)
	}
	err = run(context.Background(), []string{"-database", strings.Replace(url, pki.CA, other.CA, 1), "status"}, func(string) string { return "" }, &bytes.Buffer{}, &bytes.Buffer{})
	if err == nil || !strings.Contains(err.Error(), "certificate") {
		t.Fatalf("a server certificate of another authority: %v", err)
	}
}
