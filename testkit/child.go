package testkit

import (
	"os"
	"os/exec"
	"syscall"
	"testing"
	"time"
)

// Process is the test binary run again as a child process, standing in for the
// program under test (its TestMain runs the program's main when it sees the
// environment the test set), so that a fault test can SIGKILL a real process.
type Process struct {
	t    testing.TB
	cmd  *exec.Cmd
	done chan struct{}
	Log  string // the child's stdout and stderr
}

// StartChild runs the test binary with env added to its environment and its output
// appended to logPath. The child dies with the test binary. When t ends the child is
// stopped (see Stop), and if t failed the tail of its log is printed.
func StartChild(t testing.TB, logPath string, env ...string) *Process {
	t.Helper()
	logFile, err := os.OpenFile(logPath, os.O_CREATE|os.O_APPEND|os.O_WRONLY, 0o644)
	if err != nil {
		t.Fatal(err)
	}
	defer logFile.Close()
	cmd := exec.Command(os.Args[0])
	cmd.Env = append(os.Environ(), env...)
	cmd.Stdout, cmd.Stderr = logFile, logFile
	cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	p := &Process{t: t, cmd: cmd, done: make(chan struct{}), Log: logPath}
	go func() { _ = cmd.Wait(); close(p.done) }()
	t.Cleanup(func() {
		p.Stop()
		if t.Failed() {
			out, _ := os.ReadFile(logPath)
			if len(out) > 6000 {
				out = out[len(out)-6000:]
			}
			t.Logf("log of %s:\n%s", logPath, out)
		}
	})
	return p
}

// Pid is the child's process id.
func (p *Process) Pid() int { return p.cmd.Process.Pid }

// Kill ends the child with SIGKILL: no drain, no goodbye.
func (p *Process) Kill() {
	_ = p.cmd.Process.Kill()
	<-p.done
}

// Stop ends the child with SIGTERM and fails the test unless it exits cleanly
// (status 0) within a minute. Stopping a child that has exited does nothing.
func (p *Process) Stop() {
	select {
	case <-p.done:
		return
	default:
	}
	_ = p.cmd.Process.Signal(syscall.SIGTERM)
	select {
	case <-p.done:
		if code := p.cmd.ProcessState.ExitCode(); code != 0 {
			p.t.Errorf("child exited with status %d after SIGTERM (66: the race detector found a race); see %s", code, p.Log)
		}
	case <-time.After(time.Minute):
		p.t.Errorf("child did not stop within a minute of SIGTERM; see %s", p.Log)
		p.Kill()
	}
}
