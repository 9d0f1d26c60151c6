package testkit

import (
	"errors"
	"fmt"
	"os"
	"os/exec"
	"os/user"
	"path/filepath"
	"runtime"
	"slices"
	"sort"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"
)

// spawnCh serves process starts from one OS thread that never exits. Linux sends a
// child's parent-death signal when the thread that forked it exits, not the process;
// starting every child from a thread that lives as long as the process makes the
// signal mean what we want: the server dies with the test binary.
var spawnCh = func() chan spawnReq {
	ch := make(chan spawnReq)
	go func() {
		runtime.LockOSThread()
		for r := range ch {
			r.done <- r.cmd.Start()
		}
	}()
	return ch
}()

type spawnReq struct {
	cmd  *exec.Cmd
	done chan error
}

// startChild starts cmd so that it receives sig when this process dies.
func startChild(cmd *exec.Cmd, sig syscall.Signal) error {
	if cmd.SysProcAttr == nil {
		cmd.SysProcAttr = &syscall.SysProcAttr{}
	}
	cmd.SysProcAttr.Pdeathsig = sig
	done := make(chan error, 1)
	spawnCh <- spawnReq{cmd, done}
	return <-done
}

// asUser makes cmd run as the named user when this process runs as root (initdb and
// postgres refuse to run as root) and returns that user's ids; otherwise it leaves
// cmd alone and returns the current ids.
func asUser(cmd *exec.Cmd, name string) (uid, gid int, err error) {
	if os.Geteuid() != 0 {
		return os.Getuid(), os.Getgid(), nil
	}
	u, err := user.Lookup(name)
	if err != nil {
		return 0, 0, fmt.Errorf("running as root, and user %q to run as: %w", name, err)
	}
	uid, _ = strconv.Atoi(u.Uid)
	gid, _ = strconv.Atoi(u.Gid)
	if cmd != nil {
		if cmd.SysProcAttr == nil {
			cmd.SysProcAttr = &syscall.SysProcAttr{}
		}
		cmd.SysProcAttr.Credential = &syscall.Credential{Uid: uint32(uid), Gid: uint32(gid)}
	}
	return uid, gid, nil
}

// chownTree gives dir and everything in it to uid:gid.
func chownTree(dir string, uid, gid int) error {
	return filepath.Walk(dir, func(p string, _ os.FileInfo, err error) error {
		if err != nil {
			return err
		}
		return os.Lchown(p, uid, gid)
	})
}

// ErrNotInstalled is returned when a server's program cannot be found.
var ErrNotInstalled = errors.New("not installed")

// findProgram looks for name on PATH, then in the extra glob patterns (newest last
// after sorting, so the highest version wins).
func findProgram(name string, patterns ...string) (string, error) {
	if p, err := exec.LookPath(name); err == nil {
		return p, nil
	}
	var found []string
	for _, pat := range patterns {
		m, _ := filepath.Glob(pat)
		found = append(found, m...)
	}
	sort.Slice(found, func(i, j int) bool { return versionLess(found[i], found[j]) })
	if len(found) > 0 {
		return found[len(found)-1], nil
	}
	return "", fmt.Errorf("%s: %w (looked on PATH and in %v); 'make test' installs it with apt-get", name, ErrNotInstalled, patterns)
}

// versionLess orders paths such as /usr/lib/postgresql/9/bin before .../15/bin.
func versionLess(a, b string) bool {
	na, nb := firstNumber(a), firstNumber(b)
	if na != nb {
		return na < nb
	}
	return a < b
}

func firstNumber(s string) int {
	n, in := 0, false
	for _, c := range s {
		if c >= '0' && c <= '9' {
			n, in = n*10+int(c-'0'), true
		} else if in {
			return n
		}
	}
	return n
}

// serverProc is a server's child process: started, signalled, restarted. Start
// methods of the embedding types hold mu while they launch.
type serverProc struct {
	mu   sync.Mutex
	cmd  *exec.Cmd
	done chan struct{} // closed when cmd has exited
}

// launch starts cmd tied to this process (see startChild); the caller holds mu.
func (p *serverProc) launch(cmd *exec.Cmd, deathSig syscall.Signal) error {
	if err := startChild(cmd, deathSig); err != nil {
		return err
	}
	done := make(chan struct{})
	go func() { _ = cmd.Wait(); close(done) }()
	p.cmd, p.done = cmd, done
	return nil
}

// abort kills a process that did not become ready; the caller holds mu.
func (p *serverProc) abort() {
	_ = p.cmd.Process.Kill()
	<-p.done
	p.cmd = nil
}

// signal sends sig and waits up to wait for the process to exit, then kills it.
func (p *serverProc) signal(sig syscall.Signal, wait time.Duration) error {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.cmd == nil {
		return nil
	}
	if err := p.cmd.Process.Signal(sig); err != nil && !errors.Is(err, os.ErrProcessDone) {
		return err
	}
	select {
	case <-p.done:
	case <-time.After(wait):
		_ = p.cmd.Process.Kill()
		<-p.done
	}
	p.cmd = nil
	return nil
}

// killGroup crashes the server and every process of its process group (the server
// must have been started with Setpgid), and waits until all of them are gone: a
// crashed server's children must not keep answering on open connections.
func (p *serverProc) killGroup(wait time.Duration) error {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.cmd == nil {
		return nil
	}
	pgid := p.cmd.Process.Pid
	// A server's children may leave its process group (PostgreSQL's backends call
	// setsid): they are killed by pid, at the same moment, or a backend would answer
	// for a moment after its postmaster died.
	children := childrenOf(pgid)
	if err := syscall.Kill(-pgid, syscall.SIGKILL); err != nil && !errors.Is(err, syscall.ESRCH) {
		return err
	}
	for _, c := range children {
		syscall.Kill(c, syscall.SIGKILL)
	}
	<-p.done
	deadline := time.Now().Add(wait)
	for syscall.Kill(-pgid, 0) == nil || slices.ContainsFunc(children, alive) { // exiting, or not yet reaped
		if time.Now().After(deadline) {
			return fmt.Errorf("process group %d or its children still alive %s after SIGKILL", pgid, wait)
		}
		time.Sleep(10 * time.Millisecond)
	}
	p.cmd = nil
	return nil
}

// childrenOf lists the processes whose parent is pid (from /proc).
func childrenOf(pid int) []int {
	entries, _ := os.ReadDir("/proc")
	var out []int
	for _, e := range entries {
		child, err := strconv.Atoi(e.Name())
		if err != nil {
			continue
		}
		if ppid, _, ok := procStat(child); ok && ppid == pid {
			out = append(out, child)
		}
	}
	return out
}

// alive reports whether pid runs: it exists and is not a zombie.
func alive(pid int) bool {
	_, state, ok := procStat(pid)
	return ok && state != "Z" && state != "X"
}

// procStat reads a process's parent and state from /proc/PID/stat.
func procStat(pid int) (ppid int, state string, ok bool) {
	b, err := os.ReadFile("/proc/" + strconv.Itoa(pid) + "/stat")
	if err != nil {
		return 0, "", false
	}
	// pid (comm) state ppid ...; comm may hold spaces and parentheses.
	i := strings.LastIndexByte(string(b), ')')
	if i < 0 {
		return 0, "", false
	}
	f := strings.Fields(string(b[i+1:]))
	if len(f) < 2 {
		return 0, "", false
	}
	ppid, err = strconv.Atoi(f[1])
	return ppid, f[0], err == nil
}

// Running reports whether the server is started.
func (p *serverProc) Running() bool {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.cmd != nil
}

// Pid is the server process's id, 0 when it is not running (benchmarks read its
// resource use from /proc).
func (p *serverProc) Pid() int {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.cmd == nil || p.cmd.Process == nil {
		return 0
	}
	return p.cmd.Process.Pid
}
