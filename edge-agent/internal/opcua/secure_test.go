package opcua

import (
	"bufio"
	"context"
	"fmt"
	"log/slog"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"takt.dev/edge-agent/internal/config"
	"takt.dev/edge-agent/internal/source"
	"takt.dev/testkit"
)

// The signing and encrypting policies are tested against node-opcua, an independent
// server (gopcua's server offers security mode None only). It is installed with npm,
// pinned, into a cache outside the repository, once per machine.
const nodeOPCUAVersion = "2.186.4"

func nodeModules(t *testing.T) string {
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
	dir := filepath.Join(cache, "takt-test", "node-opcua-"+nodeOPCUAVersion)
	if _, err := os.Stat(filepath.Join(dir, "node_modules", "node-opcua-server", "package.json")); err == nil {
		return filepath.Join(dir, "node_modules")
	}
	if err := os.MkdirAll(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	cmd := exec.Command("npm", "install", "--no-audit", "--no-fund", "--no-package-lock", "--prefix", dir,
		"node-opcua-server@"+nodeOPCUAVersion, "node-opcua-certificate-manager@"+nodeOPCUAVersion,
		"node-opcua-secure-channel@"+nodeOPCUAVersion, "node-opcua-service-secure-channel@"+nodeOPCUAVersion,
		"node-opcua-variant@"+nodeOPCUAVersion)
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("npm install node-opcua %s: %v\n%s", nodeOPCUAVersion, err, out)
	}
	return filepath.Join(dir, "node_modules")
}

// secureServer starts testdata/secure-server.js and returns its endpoint.
func secureServer(t *testing.T) string {
	t.Helper()
	modules := nodeModules(t)
	port, err := testkit.FreePort()
	if err != nil {
		t.Fatal(err)
	}
	cmd := exec.Command("node", "testdata/secure-server.js", fmt.Sprint(port), filepath.Join(t.TempDir(), "server-pki"))
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
		t.Fatalf("node-opcua server not ready after 60s:\n%s", stderr.String())
	}
	return ""
}

// firstReading runs the source until it hands out a reading of the wanted quality,
// or the time is up; it returns the last reading seen.
func firstReading(t *testing.T, cfg config.OPCUAServer, want source.Quality, within time.Duration) (source.Reading, bool) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), within)
	defer cancel()
	got := make(chan source.Reading, 100)
	src := NewServer(cfg, "secure-test", NewMetrics(nil), slog.New(slog.DiscardHandler))
	done := make(chan struct{})
	go func() { src.Run(ctx, func(rs []source.Reading) { got <- rs[0] }); close(done) }()
	defer func() { cancel(); <-done }()
	var last source.Reading
	for {
		select {
		case r := <-got:
			last = r
			if r.Quality == want {
				return r, true
			}
		case <-ctx.Done():
			return last, false
		}
	}
}

func TestSecurityPoliciesAgainstNodeOPCUA(t *testing.T) {
	endpoint := secureServer(t)
	pki := t.TempDir()
	base := config.OPCUAServer{
		Name: "secure", Endpoint: endpoint, Auth: "username", Username: "takt", Password: "secret",
		Certificate: filepath.Join(pki, "own", "cert.pem"), PrivateKey: filepath.Join(pki, "own", "key.pem"),
		TrustDir: filepath.Join(pki, "trusted"), Mode: "poll", Interval: 200 * time.Millisecond, Timestamp: "source",
		Watchdog: 10 * time.Second, RequestTimeout: 5 * time.Second,
		Tags: []config.Tag{{Name: "speed", Role: "measurement", NodeID: "ns=1;s=Speed", Scale: 1}},
	}

	// First contact: the server's certificate is unknown, refused, and put aside.
	cfg := base
	cfg.SecurityPolicy, cfg.SecurityMode = "Basic256Sha256", "SignAndEncrypt"
	r, _ := firstReading(t, cfg, source.Good, 5*time.Second)
	if r.Quality != source.Bad || r.Err == nil || !strings.Contains(r.Err.Error(), "not trusted") {
		t.Fatalf("with an empty trust directory: %+v, want bad quality because the server is not trusted", r)
	}
	rejected, _ := filepath.Glob(filepath.Join(pki, "rejected", "*.der"))
	if len(rejected) != 1 {
		t.Fatalf("rejected certificates: %v, want the server's", rejected)
	}
	if _, err := os.Stat(base.Certificate); err != nil {
		t.Fatalf("no client certificate made on first start: %v", err)
	}
	// The operator trusts it.
	os.MkdirAll(base.TrustDir, 0o700)
	if err := os.Rename(rejected[0], filepath.Join(base.TrustDir, filepath.Base(rejected[0]))); err != nil {
		t.Fatal(err)
	}

	for _, c := range []struct{ policy, mode string }{
		{"Basic256Sha256", "SignAndEncrypt"},
		{"Basic256Sha256", "Sign"},
		{"Aes128_Sha256_RsaOaep", "SignAndEncrypt"},
		{"Aes256_Sha256_RsaPss", "SignAndEncrypt"},
		{"Aes256_Sha256_RsaPss", "Sign"},
	} {
		t.Run(c.policy+"/"+c.mode, func(t *testing.T) {
			cfg := base
			cfg.SecurityPolicy, cfg.SecurityMode = c.policy, c.mode
			r, ok := firstReading(t, cfg, source.Good, 20*time.Second)
			if !ok {
				t.Fatalf("no good reading: last %+v", r)
			}
			if r.Value.Num <= 0 {
				t.Fatalf("speed = %v, want the server's counter", r.Value.Num)
			}
		})
	}

	t.Run("wrong password", func(t *testing.T) {
		cfg := base
		cfg.SecurityPolicy, cfg.SecurityMode, cfg.Password = "Basic256Sha256", "SignAndEncrypt", "guess"
		r, ok := firstReading(t, cfg, source.Good, 5*time.Second)
		if ok || r.Quality != source.Bad {
			t.Fatalf("a wrong password gave %+v", r)
		}
	})
}

func TestCheckTrusted(t *testing.T) {
	dir := t.TempDir()
	der, _, err := LoadOrCreateCertificate(filepath.Join(dir, "c.pem"), filepath.Join(dir, "k.pem"), "x")
	if err != nil {
		t.Fatal(err)
	}
	trust := filepath.Join(dir, "trusted")
	err = CheckTrusted(trust, der)
	if err == nil || !strings.Contains(err.Error(), "not trusted") {
		t.Fatalf("unknown certificate: %v", err)
	}
	// Trusted as PEM.
	pem, _ := os.ReadFile(filepath.Join(dir, "c.pem"))
	os.MkdirAll(trust, 0o700)
	os.WriteFile(filepath.Join(trust, "server.pem"), pem, 0o644)
	if err := CheckTrusted(trust, der); err != nil {
		t.Fatalf("trusted certificate refused: %v", err)
	}
	// The same files are loaded, not made again.
	der2, _, err := LoadOrCreateCertificate(filepath.Join(dir, "c.pem"), filepath.Join(dir, "k.pem"), "x")
	if err != nil || string(der2) != string(der) {
		t.Fatalf("certificate not kept: %v", err)
	}
	if _, _, err := LoadOrCreateCertificate(filepath.Join(dir, "c.pem"), filepath.Join(dir, "missing.pem"), "x"); err == nil || !strings.Contains(err.Error(), "client certificate") {
		t.Fatalf("a certificate without its key: %v", err)
	}
}
