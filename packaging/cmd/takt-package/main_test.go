package main

import (
	"bytes"
	"debug/elf"
	"fmt"
	"io"
	"os"
	"os/exec"
	"os/user"
	"path/filepath"
	"strings"
	"sync"
	"testing"
)

// agentFiles and serviceFiles are what each package must install.
var (
	agentFiles   = []string{"usr/bin/takt-agent", "lib/systemd/system/takt-agent.service", "etc/takt-agent/agent.yaml"}
	serviceFiles = []string{"usr/bin/takt-ingest", "usr/bin/takt-aggregator", "usr/bin/takt-api", "usr/bin/takt-migrate", "usr/bin/takt-loadgen",
		"lib/systemd/system/takt-ingest.service", "lib/systemd/system/takt-aggregator.service", "lib/systemd/system/takt-api.service",
		"lib/systemd/system/takt-partitions.service", "lib/systemd/system/takt-partitions.timer",
		"etc/takt/ingest.yaml", "etc/takt/aggregator.yaml", "etc/takt/api.yaml", "etc/takt/takt.env"}
	elfMachine = map[string]elf.Machine{"amd64": elf.EM_X86_64, "arm64": elf.EM_AARCH64, "armhf": elf.EM_ARM}
)

// The packages of every architecture hold their files and binaries built for that
// architecture (read from the ELF header); on this machine (amd64, as root) they
// install with dpkg -i (users, owners, modes, units that systemd-analyze verify
// accepts, binaries that run and say their version) and purge without a trace.
func TestPackages(t *testing.T) {
	out := t.TempDir()
	var stdout bytes.Buffer
	if err := takt(t, &stdout, "-version", "0.1.0~test", "-out", out); err != nil {
		t.Fatal(err)
	}
	for arch, machine := range elfMachine {
		for name, want := range map[string][]string{"takt-agent": agentFiles, "takt-services": serviceFiles} {
			deb := filepath.Join(out, name+"_0.1.0~test_"+arch+".deb")
			if got := dpkgDeb(t, "-f", deb, "Architecture"); got != arch {
				t.Fatalf("%s: Architecture %q", deb, got)
			}
			x := t.TempDir()
			dpkgDeb(t, "-x", deb, x)
			for _, f := range want {
				if _, err := os.Stat(filepath.Join(x, f)); err != nil {
					t.Errorf("%s: %s missing", filepath.Base(deb), f)
				}
				if !strings.HasPrefix(f, "usr/bin/") {
					continue
				}
				e, err := elf.Open(filepath.Join(x, f))
				if err != nil {
					t.Fatalf("%s: %s: %v", filepath.Base(deb), f, err)
				}
				if e.Machine != machine {
					t.Errorf("%s: %s is built for %v, want %v", filepath.Base(deb), f, e.Machine, machine)
				}
				e.Close()
			}
		}
	}
	install(t, out)
}

// takt runs takt-package as a program of its own, built once without the race
// detector (make test runs the tests with it, and compressing packages and image
// layers under it takes minutes), and writes its output to stdout.
func takt(t *testing.T, stdout io.Writer, args ...string) error {
	t.Helper()
	toolOnce.Do(func() {
		dir, err := os.MkdirTemp("", "takt-package-tool-")
		if err != nil {
			toolErr = err
			return
		}
		tool = filepath.Join(dir, "takt-package")
		if out, err := exec.Command("go", "build", "-o", tool, ".").CombinedOutput(); err != nil {
			toolErr = fmt.Errorf("go build: %v\n%s", err, out)
		}
	})
	if toolErr != nil {
		return toolErr
	}
	cmd := exec.Command(tool, args...)
	var errOut bytes.Buffer
	cmd.Stdout, cmd.Stderr = stdout, &errOut
	if err := cmd.Run(); err != nil {
		return fmt.Errorf("takt-package %s: %v\n%s", strings.Join(args, " "), err, errOut.String())
	}
	return nil
}

var (
	toolOnce sync.Once
	tool     string
	toolErr  error
)

func dpkgDeb(t *testing.T, args ...string) string {
	t.Helper()
	b, err := exec.Command("dpkg-deb", args...).CombinedOutput()
	if err != nil {
		t.Fatalf("dpkg-deb %s: %v\n%s", strings.Join(args, " "), err, b)
	}
	return strings.TrimSpace(string(b))
}

func install(t *testing.T, out string) {
	if os.Geteuid() != 0 {
		t.Skip("installing with dpkg -i needs root; the packages were built and checked")
	}
	if exec.Command("dpkg", "-s", "takt-agent").Run() == nil || exec.Command("dpkg", "-s", "takt-services").Run() == nil {
		t.Skip("takt-agent or takt-services is installed on this machine already: not touching it")
	}
	sh := func(args ...string) string {
		t.Helper()
		b, err := exec.Command(args[0], args[1:]...).CombinedOutput()
		if err != nil {
			t.Fatalf("%s: %v\n%s", strings.Join(args, " "), err, b)
		}
		return string(b)
	}
	t.Cleanup(func() { exec.Command("dpkg", "--purge", "takt-agent", "takt-services").Run() })
	sh("dpkg", "-i", filepath.Join(out, "takt-agent_0.1.0~test_amd64.deb"), filepath.Join(out, "takt-services_0.1.0~test_amd64.deb"))
	for _, u := range []string{"takt", "takt-agent"} {
		if _, err := user.Lookup(u); err != nil {
			t.Fatalf("user %s after install: %v", u, err)
		}
	}
	for path, want := range map[string]string{
		"/var/lib/takt-agent": "takt-agent:takt-agent 750", "/etc/takt-agent/agent.yaml": "root:takt-agent 640",
		"/etc/takt": "root:takt 750", "/etc/takt/takt.env": "root:takt 640", "/usr/bin/takt-api": "root:root 755",
	} {
		if got := strings.TrimSpace(sh("stat", "-c", "%U:%G %a", path)); got != want {
			t.Errorf("%s: %s, want %s", path, got, want)
		}
	}
	for _, b := range []string{"takt-agent", "takt-ingest", "takt-aggregator", "takt-api", "takt-migrate", "takt-loadgen"} {
		if v := sh("/usr/bin/"+b, "--version"); !strings.HasPrefix(v, b+" 0.1.0~test (revision ") {
			t.Errorf("%s --version: %q", b, v)
		}
	}
	if _, err := exec.LookPath("systemd-analyze"); err == nil {
		units := []string{"takt-agent.service", "takt-ingest.service", "takt-aggregator.service", "takt-api.service",
			"takt-partitions.service", "takt-partitions.timer"}
		for i, u := range units {
			units[i] = "/lib/systemd/system/" + u
		}
		sh(append([]string{"systemd-analyze", "verify"}, units...)...)
	} else {
		t.Log("systemd-analyze not found: units not verified")
	}
	sh("dpkg", "--purge", "takt-agent", "takt-services")
	for _, path := range []string{"/usr/bin/takt-agent", "/usr/bin/takt-api", "/lib/systemd/system/takt-api.service", "/etc/takt", "/etc/takt-agent", "/var/lib/takt-agent"} {
		if _, err := os.Stat(path); err == nil {
			t.Errorf("%s is left after dpkg --purge", path)
		}
	}
	for _, u := range []string{"takt", "takt-agent"} {
		if _, err := user.Lookup(u); err == nil {
			t.Errorf("user %s is left after dpkg --purge", u)
		}
	}
}

func TestMain(m *testing.M) {
	code := m.Run()
	if tool != "" {
		os.RemoveAll(filepath.Dir(tool))
	}
	os.Exit(code)
}

func TestFlagErrors(t *testing.T) {
	for _, c := range []struct {
		args []string
		want string
	}{
		{[]string{"-arch", "mips", "-out", t.TempDir()}, `-arch "mips": want amd64, arm64 or armhf`},
		{[]string{"image", "-arch", "riscv64", "-out", t.TempDir()}, `-arch "riscv64": want amd64, arm64 or armhf`},
		{[]string{"image", "-ca-bundle", "/nonexistent", "-out", t.TempDir()}, "-ca-bundle: open /nonexistent"},
	} {
		if err := run(c.args, io.Discard, io.Discard); err == nil || !strings.Contains(err.Error(), c.want) {
			t.Errorf("%v: %v, want %q", c.args, err, c.want)
		}
	}
}
