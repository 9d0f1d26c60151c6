package testkit

import (
	"context"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"syscall"
	"time"

	"github.com/jackc/pgx/v5"
)

// PostgresServer is a private PostgreSQL cluster in a directory of its own, on a
// fixed loopback port that survives Stop/Start and Kill/Start.
type PostgresServer struct {
	Dir  string // cluster root: data/ and the log
	Port int

	bin   string   // directory of initdb and postgres
	extra []string // settings beyond PostgresSettings
	uid   int      // the server's user, owner of its files
	gid   int
	serverProc
}

// PostgresSettings are the server settings of a private cluster: fast and not
// crash-safe against power loss (fsync off), but crash-safe against a killed server,
// which is what fault tests do.
var PostgresSettings = []string{
	"listen_addresses=127.0.0.1",
	"fsync=off",
	"full_page_writes=off",
	"max_connections=200",
	"shared_buffers=128MB",
	"max_wal_size=2GB",
	"log_min_messages=warning",
	// Query statistics, as docs/operations.md recommends (the database dashboard reads them).
	"shared_preload_libraries=pg_stat_statements",
}

// StartPostgres makes a cluster in dir (which must be empty or not exist) and starts it.
func StartPostgres(dir string) (*PostgresServer, error) {
	s, err := initPostgres(dir)
	if err != nil {
		return nil, err
	}
	return s, s.Start()
}

// StartPostgresTLS makes a cluster in dir that also accepts TLS, with a server
// certificate (for 127.0.0.1 and localhost) of a throwaway authority in dir/pki.
func StartPostgresTLS(dir string) (*PostgresServer, *PKI, error) {
	s, err := initPostgres(dir)
	if err != nil {
		return nil, nil, err
	}
	pki, err := NewPKI(filepath.Join(dir, "pki"))
	if err != nil {
		return nil, nil, err
	}
	// The server reads its key only if it owns it and no one else may read it.
	for _, f := range []string{pki.ServerCert, pki.ServerKey} {
		b, err := os.ReadFile(f)
		if err != nil {
			return nil, nil, err
		}
		dst := filepath.Join(s.dataDir(), filepath.Base(f))
		if err := os.WriteFile(dst, b, 0o600); err != nil {
			return nil, nil, err
		}
		if err := os.Chown(dst, s.uid, s.gid); err != nil && os.Geteuid() == 0 {
			return nil, nil, err
		}
	}
	s.extra = []string{"ssl=on", "ssl_cert_file=" + filepath.Base(pki.ServerCert), "ssl_key_file=" + filepath.Base(pki.ServerKey)}
	return s, pki, s.Start()
}

// newPostgres is a server in dir (made), on a free port, not initialised yet; initdb
// is the program that would initialise it.
func newPostgres(dir string) (s *PostgresServer, initdb string, err error) {
	initdb, err = findProgram("initdb", "/usr/lib/postgresql/*/bin/initdb")
	if err != nil {
		return nil, "", err
	}
	s = &PostgresServer{Dir: dir, bin: filepath.Dir(initdb)}
	if s.Port, err = FreePort(); err != nil {
		return nil, "", err
	}
	return s, initdb, os.MkdirAll(dir, 0o700)
}

func initPostgres(dir string) (*PostgresServer, error) {
	s, initdb, err := newPostgres(dir)
	if err != nil {
		return nil, err
	}
	cmd := exec.Command(initdb, "-D", s.dataDir(), "-U", "postgres", "--auth=trust", "--encoding=UTF8", "--locale=C", "--no-sync")
	uid, gid, err := asUser(cmd, "postgres")
	if err != nil {
		return nil, err
	}
	if err := chownTree(dir, uid, gid); err != nil {
		return nil, err
	}
	if out, err := cmd.CombinedOutput(); err != nil {
		return nil, fmt.Errorf("initdb: %v\n%s", err, out)
	}
	s.uid, s.gid = uid, gid
	return s, nil
}

func (s *PostgresServer) dataDir() string { return filepath.Join(s.Dir, "data") }

// URL returns the connection URL of database db, as the superuser.
func (s *PostgresServer) URL(db string) string {
	return fmt.Sprintf("postgres://postgres@127.0.0.1:%d/%s?sslmode=disable", s.Port, db)
}

// errExitedEarly: the postmaster exited before accepting connections.
var errExitedEarly = errors.New("postgres exited before accepting connections")

// Start starts the server (again) and waits until it accepts connections. After a
// Kill, the old backends may hold the shared memory for a moment: Start retries.
func (s *PostgresServer) Start() error {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.cmd != nil {
		return errors.New("postgres: already running")
	}
	for attempt := 0; ; attempt++ {
		err := s.startOnce()
		if err == nil || !errors.Is(err, errExitedEarly) || attempt == 40 {
			return err
		}
		time.Sleep(250 * time.Millisecond)
	}
}

func (s *PostgresServer) startOnce() error {
	args := []string{"-D", s.dataDir(), "-p", strconv.Itoa(s.Port), "-k", s.Dir}
	for _, kv := range append(append([]string{}, PostgresSettings...), s.extra...) {
		args = append(args, "-c", kv)
	}
	log, err := os.OpenFile(filepath.Join(s.Dir, "postgres.log"), os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o644)
	if err != nil {
		return err
	}
	defer log.Close()
	cmd := exec.Command(filepath.Join(s.bin, "postgres"), args...)
	cmd.Stdout, cmd.Stderr = log, log
	if _, _, err := asUser(cmd, "postgres"); err != nil {
		return err
	}
	if cmd.SysProcAttr == nil {
		cmd.SysProcAttr = &syscall.SysProcAttr{}
	}
	cmd.SysProcAttr.Setpgid = true // Kill takes the backends down with the postmaster
	// SIGQUIT is PostgreSQL's immediate shutdown: the backends go with the postmaster.
	if err := s.launch(cmd, syscall.SIGQUIT); err != nil {
		return fmt.Errorf("start postgres: %w", err)
	}
	done := s.done

	err = waitFor(context.Background(), 60*time.Second, "postgres on port "+strconv.Itoa(s.Port), func(ctx context.Context) error {
		select {
		case <-done:
			return fmt.Errorf("%w; see %s", errExitedEarly, filepath.Join(s.Dir, "postgres.log"))
		default:
		}
		c, err := pgx.Connect(ctx, s.URL("postgres"))
		if err != nil {
			return err
		}
		return c.Close(ctx)
	})
	if err != nil {
		s.abort()
	}
	return err
}

// Stop shuts the server down cleanly (fast shutdown: open transactions roll back).
func (s *PostgresServer) Stop() error { return s.signal(syscall.SIGINT, time.Minute) }

// Kill crashes the server (SIGKILL of the postmaster and its backends at once):
// committed transactions survive, the rest is recovered away at the next Start.
func (s *PostgresServer) Kill() error { return s.killGroup(time.Minute) }

// Close stops the server and removes its directory.
func (s *PostgresServer) Close() error {
	err := s.Stop()
	if rerr := os.RemoveAll(s.Dir); err == nil {
		err = rerr
	}
	return err
}
