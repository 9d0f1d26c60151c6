package testkit

import (
	"bufio"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"
)

// NodeOPCUAVersion is the node-opcua release the tests install (pinned): an OPC UA
// server independent of gopcua, for the security tests and for replaying a line.
const NodeOPCUAVersion = "2.186.4"

// NodeOPCUA installs node-opcua with npm, pinned, into a cache outside the
// repository (once per machine, without a lock file), and returns the node_modules
// directory to put in NODE_PATH.
func NodeOPCUA(t testing.TB) string {
	t.Helper()
	for _, tool := range []string{"node", "npm"} {
		if _, err := exec.LookPath(tool); err != nil {
			t.Fatalf("%s not found: make test installs Node.js with apt-get when missing", tool)
		}
	}
	cache, err := os.UserCacheDir()
	if err != nil {
		cache = os.TempDir()
	}
	dir := filepath.Join(cache, "takt-test", "node-opcua-"+NodeOPCUAVersion)
	if _, err := os.Stat(filepath.Join(dir, "node_modules", "node-opcua-server", "package.json")); err == nil {
		return filepath.Join(dir, "node_modules")
	}
	if err := os.MkdirAll(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	cmd := exec.Command("npm", "install", "--no-audit", "--no-fund", "--no-package-lock", "--prefix", dir,
		"node-opcua-server@"+NodeOPCUAVersion, "node-opcua-certificate-manager@"+NodeOPCUAVersion,
		"node-opcua-secure-channel@"+NodeOPCUAVersion, "node-opcua-service-secure-channel@"+NodeOPCUAVersion,
		"node-opcua-variant@"+NodeOPCUAVersion)
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("npm install node-opcua %s: %v\n%s", NodeOPCUAVersion, err, out)
	}
	return filepath.Join(dir, "node_modules")
}

// StartNodeScript runs a node-opcua server script (node SCRIPT ARGS...) until the
// test ends, and returns what follows "READY " on the first line that starts so (the
// script's endpoint).
func StartNodeScript(t testing.TB, script string, args ...string) string {
	t.Helper()
	modules := NodeOPCUA(t)
	cmd := exec.Command("node", append([]string{script}, args...)...)
	cmd.Env = append(os.Environ(), "NODE_PATH="+modules)
	cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
	stdout, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	var stderr strings.Builder
	cmd.Stderr = &stderr
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { cmd.Process.Kill(); cmd.Wait() })
	ready := make(chan string, 1)
	go func() {
		sc := bufio.NewScanner(stdout)
		for sc.Scan() {
			if ep, ok := strings.CutPrefix(sc.Text(), "READY "); ok {
				ready <- ep
			}
		}
	}()
	select {
	case ep := <-ready:
		return ep
	case <-time.After(60 * time.Second):
		t.Fatalf("node %s not ready after 60s:\n%s", script, stderr.String())
	}
	return ""
}
