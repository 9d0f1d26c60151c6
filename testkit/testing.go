package testkit

import (
	"context"
	"fmt"
	"net/url"
	"os"
	"os/signal"
	"path/filepath"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"

	"takt.dev/migrations"
	"takt.dev/servicekit/pii"
)

// EnvDatabaseURL names a PostgreSQL server to use instead of a private cluster. The
// role in it must be allowed to create databases. Fault tests that stop the server
// skip when it is set, because they cannot stop a server they did not start.
const EnvDatabaseURL = "TAKT_TEST_DATABASE_URL"

var shared struct {
	sync.Mutex
	main      bool
	root      string
	pg        *PostgresServer
	external  *url.URL
	template  string
	ownerMade bool
	mq        *MosquittoServer
	closers   []func() error
}

var dbCounter atomic.Int64

// Main runs the package's tests and then removes every server testkit started, even
// when tests failed or the run was interrupted. Call it from TestMain.
func Main(m *testing.M) {
	shared.Lock()
	shared.main = true
	shared.Unlock()
	sigs := make(chan os.Signal, 1)
	signal.Notify(sigs, os.Interrupt, syscall.SIGTERM)
	go func() {
		<-sigs
		closeAll()
		os.Exit(130)
	}()
	code := m.Run()
	closeAll()
	os.Exit(code)
}

func closeAll() {
	shared.Lock()
	defer shared.Unlock()
	for i := len(shared.closers) - 1; i >= 0; i-- {
		if err := shared.closers[i](); err != nil {
			fmt.Fprintln(os.Stderr, "testkit: cleanup:", err)
		}
	}
	shared.closers = nil
	if shared.root != "" {
		os.RemoveAll(shared.root)
		shared.root = ""
	}
}

// rootDir returns the directory private servers live in; the caller holds shared.
func rootDir(t testing.TB) string {
	t.Helper()
	if !shared.main {
		t.Fatal("testkit: call testkit.Main(m) from TestMain, so that private servers are removed at exit")
	}
	if shared.root == "" {
		dir, err := os.MkdirTemp("", "takt-test-")
		if err != nil {
			t.Fatal(err)
		}
		if err := os.Chmod(dir, 0o755); err != nil { // the postgres user must reach its data dir
			t.Fatal(err)
		}
		shared.root = dir
	}
	return shared.root
}

// Postgres returns the package's private PostgreSQL server, starting it on first use
// and again if an earlier test left it stopped. It skips the test when
// TAKT_TEST_DATABASE_URL is set: a test asking for the server means to stop it.
func Postgres(t testing.TB) *PostgresServer {
	t.Helper()
	if os.Getenv(EnvDatabaseURL) != "" {
		t.Skipf("fault test needs a private PostgreSQL; %s is set", EnvDatabaseURL)
	}
	shared.Lock()
	defer shared.Unlock()
	return privatePostgres(t)
}

func privatePostgres(t testing.TB) *PostgresServer {
	t.Helper()
	if shared.pg == nil {
		s, err := StartPostgres(filepath.Join(rootDir(t), "postgres"))
		if err != nil {
			t.Fatalf("testkit: private PostgreSQL: %v", err)
		}
		shared.pg = s
		shared.closers = append(shared.closers, s.Close)
	}
	if !shared.pg.Running() {
		if err := shared.pg.Start(); err != nil {
			t.Fatalf("testkit: restart PostgreSQL: %v", err)
		}
	}
	return shared.pg
}

// serverURL returns the URL of database name on the test server; the caller holds shared.
func serverURL(t testing.TB, name string) string {
	t.Helper()
	if raw := os.Getenv(EnvDatabaseURL); raw != "" {
		if shared.external == nil {
			u, err := url.Parse(raw)
			if err != nil {
				t.Fatalf("testkit: %s: %v", EnvDatabaseURL, err)
			}
			shared.external = u
		}
		u := *shared.external
		u.Path = "/" + name
		return u.String()
	}
	return privatePostgres(t).URL(name)
}

// Database is a fresh database of its own for one test, with Takt's migrations
// applied, dropped when the test ends.
type Database struct {
	Name  string
	URL   string // as Owner, who migrated it and owns every table, not a superuser (or as the TAKT_TEST_DATABASE_URL role)
	Admin string // as the server's superuser (or that role): for what only a DBA may do
}

// NewDatabase creates a database for t from a migrated template.
func NewDatabase(t testing.TB) *Database {
	return newDatabase(t, true)
}

// NewEmptyDatabase creates a database for t with no migrations applied.
func NewEmptyDatabase(t testing.TB) *Database {
	return newDatabase(t, false)
}

func newDatabase(t testing.TB, migrated bool) *Database {
	t.Helper()
	shared.Lock()
	defer shared.Unlock()
	admin := serverURL(t, "postgres")
	owner := testOwner(t, admin)
	template := "template0"
	if migrated && shared.template == "" {
		name := fmt.Sprintf("takt_template_%d", os.Getpid())
		if err := createTemplate(admin, ownerURL(t, name), name, owner); err != nil {
			t.Fatalf("testkit: template database: %v", err)
		}
		if owner != "" {
			// Tests hand Database.URL to the API too, which switches to takt_app in
			// every request, as its own role (a member, migration 00018) does.
			if err := execAdmin(admin, "GRANT takt_app TO "+owner); err != nil {
				t.Fatalf("testkit: %v", err)
			}
		}
		shared.template = name
		shared.closers = append(shared.closers, func() error { return dropDatabase(admin, name) })
	}
	if migrated {
		template = shared.template
	}
	name := fmt.Sprintf("takt_test_%d_%d", os.Getpid(), dbCounter.Add(1))
	if err := execAdmin(admin, fmt.Sprintf("CREATE DATABASE %s TEMPLATE %s%s", name, template, ownedBy(owner))); err != nil {
		t.Fatalf("testkit: create database: %v", err)
	}
	t.Cleanup(func() {
		shared.Lock()
		defer shared.Unlock()
		if shared.pg != nil && !shared.pg.Running() {
			return // the server goes away with the package
		}
		if err := dropDatabase(admin, name); err != nil {
			t.Logf("testkit: drop database %s: %v", name, err)
		}
	})
	return &Database{Name: name, URL: ownerURL(t, name), Admin: serverURL(t, name)}
}

// Owner is the role that migrates and owns every test database on a private server.
// It is not a superuser (CREATEROLE, for the migrations' group roles): every test,
// and every service a test starts with Database.URL, runs with no superuser, as a
// least-privilege deployment's migrations do.
const Owner = "takt_owner"

// testOwner makes Owner on the private server once and returns it; on a server of
// TAKT_TEST_DATABASE_URL, whose role may not create roles, that role owns the
// databases ("" here: CREATE DATABASE's default). The caller holds shared.
func testOwner(t testing.TB, admin string) string {
	t.Helper()
	if os.Getenv(EnvDatabaseURL) != "" {
		return ""
	}
	if !shared.ownerMade {
		err := execAdmin(admin, `DO $$ BEGIN
			IF NOT EXISTS (SELECT FROM pg_roles WHERE rolname = '`+Owner+`') THEN
				CREATE ROLE `+Owner+` LOGIN NOSUPERUSER CREATEROLE NOBYPASSRLS;
			END IF; END $$`)
		if err != nil {
			t.Fatalf("testkit: the owner role: %v", err)
		}
		shared.ownerMade = true
	}
	return Owner
}

// ownedBy is CREATE DATABASE's OWNER clause for owner ("": none).
func ownedBy(owner string) string {
	if owner == "" {
		return ""
	}
	return " OWNER " + owner
}

// ownerURL is the URL of database name as the owner of the test databases.
func ownerURL(t testing.TB, name string) string {
	t.Helper()
	raw := serverURL(t, name)
	if os.Getenv(EnvDatabaseURL) != "" {
		return raw
	}
	u, err := url.Parse(raw)
	if err != nil {
		t.Fatal(err)
	}
	u.User = url.User(Owner)
	return u.String()
}

// Pool returns a connection pool to the database, closed when the test ends.
func (d *Database) Pool(t testing.TB) *pgxpool.Pool {
	t.Helper()
	p, err := pgxpool.New(context.Background(), d.URL)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(p.Close)
	return p
}

// Login makes a login role with attrs ("IN ROLE takt_ingest", "BYPASSRLS"...) as
// the DBA, dropped when the test ends, and returns a pool to the database as it.
func (d *Database) Login(t testing.TB, attrs string) *pgxpool.Pool {
	t.Helper()
	role := fmt.Sprintf("takt_login_%d_%d", os.Getpid(), dbCounter.Add(1))
	if err := execAdmin(d.Admin, "CREATE ROLE "+role+" LOGIN "+attrs); err != nil {
		t.Fatalf("testkit: CREATE ROLE ... LOGIN %s: %v", attrs, err)
	}
	cfg, err := pgxpool.ParseConfig(d.URL)
	if err != nil {
		t.Fatal(err)
	}
	cfg.ConnConfig.User = role
	p, err := pgxpool.NewWithConfig(context.Background(), cfg)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		p.Close()
		execAdmin(d.Admin, "DROP ROLE IF EXISTS "+role)
	})
	return p
}

func createTemplate(admin, tplURL, name, owner string) error {
	if err := execAdmin(admin, "CREATE DATABASE "+name+ownedBy(owner)); err != nil {
		return err
	}
	db, err := migrations.Open(tplURL)
	if err != nil {
		return err
	}
	defer db.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	return migrations.Up(ctx, db)
}

func dropDatabase(admin, name string) error {
	return execAdmin(admin, "DROP DATABASE IF EXISTS "+name+" WITH (FORCE)")
}

func execAdmin(admin, sql string) error {
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	c, err := pgx.Connect(ctx, admin)
	if err != nil {
		return err
	}
	defer c.Close(ctx)
	_, err = c.Exec(ctx, sql)
	return err
}

// Mosquitto returns the package's private Mosquitto broker, starting it on first use
// and again if an earlier test left it stopped.
func Mosquitto(t testing.TB) *MosquittoServer {
	t.Helper()
	shared.Lock()
	defer shared.Unlock()
	if shared.mq == nil {
		s, err := StartMosquitto(filepath.Join(rootDir(t), "mosquitto"))
		if err != nil {
			t.Fatalf("testkit: private Mosquitto: %v", err)
		}
		shared.mq = s
		shared.closers = append(shared.closers, s.Close)
	}
	if !shared.mq.Running() {
		if err := shared.mq.Start(); err != nil {
			t.Fatalf("testkit: restart Mosquitto: %v", err)
		}
	}
	return shared.mq
}

// Kafka starts a Kafka-protocol broker for t alone, behind a Proxy (so the test can
// cut its clients off), with Takt's topics created; it is removed when t ends. Being
// in process, it starts in milliseconds: each test gets a clean one, with no records
// or group offsets left by another.
func Kafka(t testing.TB, opts ...KafkaOptions) *KafkaServer {
	t.Helper()
	o := KafkaOptions{Proxied: true}
	if len(opts) > 0 {
		o = opts[0]
	}
	s, err := StartKafka(t.TempDir(), o)
	if err != nil {
		t.Fatalf("testkit: kafka: %v", err)
	}
	t.Cleanup(func() { _ = s.Close() })
	return s
}

// PostgresTLS starts a cluster for t alone that accepts TLS (StartPostgresTLS) and
// returns a URL of its postgres database with sslmode=verify-full against its
// authority, and the authority.
func PostgresTLS(t testing.TB) (url string, pki *PKI) {
	t.Helper()
	dir := t.TempDir()
	// The server runs as user postgres, which must reach its directory.
	for _, d := range []string{dir, filepath.Dir(dir)} {
		if err := os.Chmod(d, 0o755); err != nil {
			t.Fatal(err)
		}
	}
	pg, pki, err := StartPostgresTLS(filepath.Join(dir, "pg"))
	if err != nil {
		t.Fatalf("testkit: postgres with TLS: %v", err)
	}
	t.Cleanup(func() { _ = pg.Close() })
	return fmt.Sprintf("postgres://postgres@127.0.0.1:%d/postgres?sslmode=verify-full&sslrootcert=%s", pg.Port, pki.CA), pki
}

// LeastPrivilege is a database of its own for one test, migrated by an owner that is
// not a superuser, with a login role for each service as migration 00019 describes:
// no service is a superuser or the tables' owner.
type LeastPrivilege struct {
	Database          // URL: as the owner (for fixtures and the admin commands)
	Ingest     string // URL as a login role of takt_ingest, with BYPASSRLS
	Aggregator string // URL as a login role of takt_aggregator
	API        string // URL as a login role of takt_api
}

// NewLeastPrivilegeDatabase creates the owner (NOSUPERUSER, CREATEROLE for the
// migrations' group roles), its database, the migrations as the owner, and the
// services' login roles, all dropped when the test ends. The server's role must be a
// superuser: only a superuser can give the ingest role BYPASSRLS.
func NewLeastPrivilegeDatabase(t testing.TB) *LeastPrivilege {
	t.Helper()
	shared.Lock()
	admin := serverURL(t, "postgres")
	shared.Unlock()
	n := dbCounter.Add(1)
	prefix := fmt.Sprintf("takt_lp_%d_%d", os.Getpid(), n)
	owner, ingest, agg, api := prefix+"_owner", prefix+"_ingest", prefix+"_aggregator", prefix+"_api"
	t.Cleanup(func() {
		if err := execAdmin(admin, fmt.Sprintf("DROP DATABASE IF EXISTS %s WITH (FORCE)", prefix)); err != nil {
			t.Logf("testkit: drop database %s: %v", prefix, err)
		}
		for _, r := range []string{api, agg, ingest, owner} {
			execAdmin(admin, "DROP ROLE IF EXISTS "+r)
		}
	})
	for _, sql := range []string{
		fmt.Sprintf("CREATE ROLE %s LOGIN NOSUPERUSER CREATEROLE NOBYPASSRLS", owner),
		fmt.Sprintf("CREATE DATABASE %s OWNER %s TEMPLATE template0", prefix, owner),
	} {
		if err := execAdmin(admin, sql); err != nil {
			t.Fatalf("testkit: %s: %v", sql, err)
		}
	}
	as := func(role string) string {
		u, err := url.Parse(admin)
		if err != nil {
			t.Fatal(err)
		}
		u.User = url.User(role)
		u.Path = "/" + prefix
		return u.String()
	}
	db, err := migrations.Open(as(owner))
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	err = migrations.Up(ctx, db)
	db.Close()
	if err != nil {
		t.Fatalf("testkit: migrations as the owner %s (not a superuser): %v", owner, err)
	}
	// The owner makes the logins it may; the ingest one needs a superuser (BYPASSRLS).
	for _, c := range []struct{ url, sql string }{
		{as(owner), fmt.Sprintf("CREATE ROLE %s LOGIN IN ROLE takt_aggregator", agg)},
		{as(owner), fmt.Sprintf("CREATE ROLE %s LOGIN IN ROLE takt_api", api)},
		{admin, fmt.Sprintf("CREATE ROLE %s LOGIN BYPASSRLS IN ROLE takt_ingest", ingest)},
	} {
		if err := execAdmin(c.url, c.sql); err != nil {
			t.Fatalf("testkit: %s: %v", c.sql, err)
		}
	}
	return &LeastPrivilege{Database: Database{Name: prefix, URL: as(owner)}, Ingest: as(ingest), Aggregator: as(agg), API: as(api)}
}

var piiKeys = sync.OnceValue(func() string {
	idx, _ := pii.Keygen(pii.IndexID)
	k1, _ := pii.Keygen("k1")
	return idx + "," + k1
})

// PIIKeys is a throwaway key list for TAKT_PII_KEYS, the same for the whole test
// process (servicekit/pii).
func PIIKeys() string { return piiKeys() }

// PIIKeyring is a keyring of PIIKeys.
func PIIKeyring(t testing.TB) *pii.Keyring {
	k, err := pii.Parse(PIIKeys())
	if err != nil {
		t.Fatal(err)
	}
	r, err := pii.New(k)
	if err != nil {
		t.Fatal(err)
	}
	return r
}

// RegisterLine registers tenant with one line of equipment (ideal cycle time 1 s):
// site lyon (UTC), area pack, line line-1, work center wc.
func RegisterLine(t testing.TB, pool *pgxpool.Pool, tenant string, equipment ...string) {
	t.Helper()
	_, err := pool.Exec(context.Background(), `
WITH tn AS (INSERT INTO tenant VALUES ($1, $1) RETURNING tenant_id),
s AS (INSERT INTO site (tenant_id, code, name, time_zone) SELECT tenant_id, 'lyon', 'Lyon', 'UTC' FROM tn RETURNING tenant_id, id),
a AS (INSERT INTO area (tenant_id, site_id, code, name) SELECT tenant_id, id, 'pack', 'Pack' FROM s RETURNING tenant_id, id),
l AS (INSERT INTO line (tenant_id, area_id, code, name) SELECT tenant_id, id, 'line-1', 'Line 1' FROM a RETURNING tenant_id, id),
w AS (INSERT INTO work_center (tenant_id, line_id, code, name) SELECT tenant_id, id, 'wc', 'WC' FROM l RETURNING tenant_id, id)
INSERT INTO equipment (tenant_id, work_center_id, code, name, ideal_cycle_time_s) SELECT tenant_id, id, c, c, 1 FROM w, unnest($2::text[]) c`,
		tenant, equipment)
	if err != nil {
		t.Fatalf("testkit: register tenant %s: %v", tenant, err)
	}
}
