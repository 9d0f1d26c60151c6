package main

import (
	"bytes"
	"context"
	"fmt"
	"os/exec"
	"regexp"
	"strings"
	"sync"
	"testing"
	"time"

	"takt.dev/testkit"
)

// syncBuffer is the demo's output, read while it runs.
type syncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (s *syncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

func (s *syncBuffer) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}

// The demo as a new user meets it: it starts secure by default, and the commands
// it prints work as printed, with clients Takt did not write (Debian's kcat over
// mutual TLS, mosquitto_sub over TLS with a password); without the credentials they
// print, the same clients are refused.
func TestDemoAsANewUser(t *testing.T) {
	bin := buildBinaries(t)
	port, _ := testkit.FreePort()
	api := fmt.Sprintf("127.0.0.1:%d", port)
	ctx, cancel := context.WithCancel(context.Background())
	var out syncBuffer
	done := make(chan error, 1)
	go func() { done <- run(ctx, []string{"-bin", bin, "-api", api}, &out) }()
	defer func() {
		cancel()
		if err := <-done; err != nil {
			t.Errorf("the demo stopped with %v", err)
		}
	}()
	stored := regexp.MustCompile(`takt-demo: [1-9][0-9]* samples in PostgreSQL`)
	for deadline := time.Now().Add(2 * time.Minute); !stored.MatchString(out.String()); time.Sleep(200 * time.Millisecond) {
		select {
		case err := <-done:
			done <- err
			t.Fatalf("the demo stopped: %v\n%s", err, out.String())
		default:
		}
		if time.Now().After(deadline) {
			t.Fatalf("no samples stored after 2 minutes:\n%s", out.String())
		}
	}
	printed := func(prefix string) string {
		for _, l := range strings.Split(out.String(), "\n") {
			if l = strings.TrimSpace(strings.TrimPrefix(strings.TrimSpace(l), "Try:")); strings.HasPrefix(l, prefix) {
				return l
			}
		}
		t.Fatalf("the demo printed no %q line:\n%s", prefix, out.String())
		return ""
	}
	shell := func(cmd string) (string, error) {
		b, err := exec.Command("bash", "-c", "timeout 30 "+cmd).CombinedOutput()
		return string(b), err
	}
	kcat := printed("kcat ")
	if got, err := shell(kcat); err != nil || !strings.Contains(got, `"tenant":"acme"`) {
		t.Fatalf("%s: %v\n%s", kcat, err, got)
	}
	sub := printed("mosquitto_sub ")
	if got, err := shell(sub); err != nil || !strings.Contains(got, `"tenant":"acme"`) {
		t.Fatalf("%s: %v\n%s", sub, err, got)
	}
	curl := printed("curl ")
	if got, err := shell(curl + " -sf"); err != nil || !strings.Contains(got, `"total"`) {
		t.Fatalf("%s: %v\n%s", curl, err, got)
	}
	// Without what the demo printed: no client certificate, no password.
	noCert := regexp.MustCompile(` -X ssl\.(certificate|key)\.location=\S+`).ReplaceAllString(kcat, "")
	if got, err := shell(strings.Replace(noCert, "-C -o -3 -e", "-L -m 5", 1)); err == nil {
		t.Fatalf("kcat without a client certificate got in:\n%s", got)
	}
	noPassword := regexp.MustCompile(` -u \S+ -P \S+`).ReplaceAllString(sub, "")
	if got, err := shell(noPassword); err == nil {
		t.Fatalf("mosquitto_sub without a password got in:\n%s", got)
	}
	// The reader may not publish: its message never reaches the bridge.
	pub := strings.Replace(strings.Replace(sub, "mosquitto_sub", "mosquitto_pub -q 1 -m 'not json'", 1), "-t 'takt/#' -C 1", "-t takt/v1/acme/lyon/packaging/line-1/filler-1", 1)
	shell(pub)
	psql := printed("psql ")
	psql = psql[:strings.Index(psql, " -c ")]
	time.Sleep(2 * time.Second)
	if got, err := shell(psql + ` -Atc "SELECT count(*) FROM dead_letter"`); err != nil || strings.TrimSpace(got) != "0" {
		t.Fatalf("a read-only MQTT user's publish reached the pipeline (dead letters: %s, %v)", got, err)
	}
}
