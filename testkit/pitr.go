package testkit

import (
	"context"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
)

// StartPostgresArchiving makes a cluster in dir that archives every finished WAL
// segment into dir/archive (the continuous archive of point-in-time recovery), and
// starts it. Full-page writes are on: a base backup needs them.
func StartPostgresArchiving(dir string) (*PostgresServer, error) {
	s, err := initPostgres(dir)
	if err != nil {
		return nil, err
	}
	archive := s.Archive()
	if err := os.MkdirAll(archive, 0o700); err != nil {
		return nil, err
	}
	if err := chownTree(archive, s.uid, s.gid); err != nil {
		return nil, err
	}
	s.extra = []string{"wal_level=replica", "archive_mode=on", "full_page_writes=on",
		"archive_command=test ! -f " + archive + "/%f && cp %p " + archive + "/%f"}
	return s, s.Start()
}

// Archive is where an archiving cluster copies its WAL segments.
func (s *PostgresServer) Archive() string { return filepath.Join(s.Dir, "archive") }

// BaseBackup takes a base backup of the running cluster into dst (which must not
// exist), with pg_basebackup, as an operator would.
func (s *PostgresServer) BaseBackup(dst string) error {
	prog, err := findProgram("pg_basebackup", filepath.Join(s.bin, "pg_basebackup"), "/usr/lib/postgresql/*/bin/pg_basebackup")
	if err != nil {
		return err
	}
	if err := os.MkdirAll(filepath.Dir(dst), 0o755); err != nil {
		return err
	}
	cmd := exec.Command(prog, "-h", "127.0.0.1", "-p", strconv.Itoa(s.Port), "-U", "postgres", "-D", dst, "-X", "stream", "-c", "fast")
	if _, _, err := asUser(cmd, "postgres"); err != nil {
		return err
	}
	if err := os.Chown(filepath.Dir(dst), s.uid, s.gid); err != nil && os.Geteuid() == 0 {
		return err
	}
	if out, err := cmd.CombinedOutput(); err != nil {
		return fmt.Errorf("pg_basebackup: %v\n%s", err, out)
	}
	return nil
}

// ArchiveNow closes the current WAL segment and waits until the archive holds it,
// so that everything committed so far can be recovered from the archive.
func (s *PostgresServer) ArchiveNow(ctx context.Context) error {
	c, err := pgx.Connect(ctx, s.URL("postgres"))
	if err != nil {
		return err
	}
	defer c.Close(ctx)
	var segment string
	if err := c.QueryRow(ctx, `SELECT pg_walfile_name(pg_switch_wal())`).Scan(&segment); err != nil {
		return err
	}
	return waitFor(ctx, time.Minute, "WAL segment "+segment+" archived", func(context.Context) error {
		if _, err := os.Stat(filepath.Join(s.Archive(), segment)); err != nil {
			return err
		}
		return nil
	})
}

// RestorePostgres makes a new cluster in dir from the base backup at backup and the
// WAL archive at archive, recovered to target (the state of the last transaction
// committed at or before it), promoted, and started on a port of its own: the
// procedure of docs/operations.md.
func RestorePostgres(backup, archive, dir string, target time.Time) (*PostgresServer, error) {
	s, _, err := newPostgres(dir)
	if err != nil {
		return nil, err
	}
	cp := exec.Command("cp", "-a", backup, s.dataDir())
	if out, err := cp.CombinedOutput(); err != nil {
		return nil, fmt.Errorf("copy the base backup: %v\n%s", err, out)
	}
	if err := os.WriteFile(filepath.Join(s.dataDir(), "recovery.signal"), nil, 0o600); err != nil {
		return nil, err
	}
	probe := exec.Command("true")
	if s.uid, s.gid, err = asUser(probe, "postgres"); err != nil {
		return nil, err
	}
	if err := chownTree(dir, s.uid, s.gid); err != nil {
		return nil, err
	}
	s.extra = []string{"restore_command=cp " + archive + "/%f %p",
		"recovery_target_time=" + target.UTC().Format("2006-01-02 15:04:05.999999+00"),
		"recovery_target_action=promote", "recovery_target_inclusive=true"}
	if err := s.Start(); err != nil {
		return nil, err
	}
	// Start returns once connections are accepted, which a server in recovery does
	// too: wait for the promotion.
	ctx := context.Background()
	err = waitFor(ctx, 2*time.Minute, "recovery to end", func(ctx context.Context) error {
		c, err := pgx.Connect(ctx, s.URL("postgres"))
		if err != nil {
			return err
		}
		defer c.Close(ctx)
		var inRecovery bool
		if err := c.QueryRow(ctx, `SELECT pg_is_in_recovery()`).Scan(&inRecovery); err != nil {
			return err
		}
		if inRecovery {
			return errors.New("still in recovery")
		}
		return nil
	})
	if err != nil {
		s.Stop()
		return nil, fmt.Errorf("%w; see %s", err, filepath.Join(dir, "postgres.log"))
	}
	return s, nil
}

// ServerDir returns a new directory for a server of t's own (a cluster, its backup
// and archive), under the directory private servers live in, which the postgres
// user can reach; it is removed when the test ends.
func ServerDir(t testing.TB) string {
	t.Helper()
	shared.Lock()
	root := rootDir(t)
	shared.Unlock()
	dir, err := os.MkdirTemp(root, "server-")
	if err != nil {
		t.Fatal(err)
	}
	if err := os.Chmod(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(dir) })
	return dir
}
