package servicekit

import (
	"context"
	"io"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

func TestLoadYAML(t *testing.T) {
	type cfg struct {
		Addr  string        `yaml:"addr"`
		Every time.Duration `yaml:"every"`
	}
	dir := t.TempDir()
	write := func(name, body string) string {
		p := filepath.Join(dir, name)
		os.WriteFile(p, []byte(body), 0o644)
		return p
	}
	c := cfg{Addr: "default"}
	if err := LoadYAML(write("ok.yaml", "every: 2s\n"), &c); err != nil || c.Addr != "default" || c.Every != 2*time.Second {
		t.Fatalf("%+v %v", c, err)
	}
	if err := LoadYAML(write("empty.yaml", ""), &c); err != nil {
		t.Fatalf("empty file: %v", err)
	}
	err := LoadYAML(write("bad.yaml", "adr: x\n"), &c)
	if err == nil || !strings.Contains(err.Error(), "bad.yaml") || !strings.Contains(err.Error(), `line 1: adr: unknown key (did you mean "addr"?)`) {
		t.Fatalf("unknown field: %v", err)
	}
	// Every fault at once, each with its line and path, in the file's words.
	err = LoadYAML(write("worse.yaml", "adr: x\nevery: soon\nnested:\n  deep: 1\n"), &c)
	for _, want := range []string{"line 1: adr: unknown key", "line 2: cannot unmarshal !!str `soon` into a duration", "line 3: nested: unknown key"} {
		if err == nil || !strings.Contains(err.Error(), want) {
			t.Errorf("want %q in:\n%v", want, err)
		}
	}
	if err := LoadYAML("", &c); err != nil {
		t.Fatal(err)
	}
	if err := LoadYAML(filepath.Join(dir, "missing.yaml"), &c); err == nil {
		t.Fatal("a missing file was accepted")
	}
}

func TestServeUntilCancelled(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() {
		done <- Serve(ctx, ln, http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) { io.WriteString(w, "hi") }))
	}()
	resp, err := http.Get("http://" + ln.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	b, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if string(b) != "hi" {
		t.Fatalf("body %q", b)
	}
	cancel()
	select {
	case err := <-done:
		if err != nil {
			t.Fatalf("Serve: %v", err)
		}
	case <-time.After(15 * time.Second):
		t.Fatal("Serve did not return after cancel")
	}
	if _, err := http.Get("http://" + ln.Addr().String()); err == nil {
		t.Fatal("still serving after shutdown")
	}
}
