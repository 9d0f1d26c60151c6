package opcua

import (
	"context"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"takt.dev/edge-agent/internal/source"
	"takt.dev/testkit"
)

// The signing and encrypting policies are tested against node-opcua, an independent
// server (gopcua's server offers security mode None only), installed by testkit.

// secureServer starts testdata/secure-server.js and returns its endpoint.
func secureServer(t *testing.T) string {
	t.Helper()
	port, err := testkit.FreePort()
	if err != nil {
		t.Fatal(err)
	}
	return testkit.StartNodeScript(t, "testdata/secure-server.js", fmt.Sprint(port), filepath.Join(t.TempDir(), "server-pki"))
}

// firstReading runs the source until it hands out a reading of the wanted quality,
// or the time is up; it returns the last reading seen.
func firstReading(t *testing.T, cfg Config, want source.Quality, within time.Duration) (source.Reading, bool) {
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
	base := Config{
		Name: "secure", Endpoint: endpoint, Auth: "username", Username: "takt", Password: "secret",
		Certificate: filepath.Join(pki, "own", "cert.pem"), PrivateKey: filepath.Join(pki, "own", "key.pem"),
		TrustDir: filepath.Join(pki, "trusted"), Mode: "poll", Interval: 200 * time.Millisecond, Timestamp: "source",
		Watchdog: 10 * time.Second, RequestTimeout: 5 * time.Second,
		Tags: []Tag{{Tag: source.Tag{Name: "speed", Role: "measurement", Scale: 1}, NodeID: "ns=1;s=Speed"}},
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
