package agent

import (
	"os"
	"path/filepath"
	"testing"
	"time"
)

// The lifeline says how far a run got by the sources' clock, never before a state it
// reported, and a torn file says nothing rather than something wrong.
func TestLifeline(t *testing.T) {
	dir := t.TempDir()
	if p, err := previousRun(dir); p != nil || err != nil {
		t.Fatalf("no file: %+v %v", p, err)
	}
	local := time.Date(2026, 12, 1, 4, 0, 0, 0, time.UTC)
	src := time.Date(2026, 11, 20, 9, 0, 0, 0, time.UTC) // a PLC whose clock is elsewhere
	l := &lifeline{path: filepath.Join(dir, lifelineFile), incarnation: "run1", now: func() time.Time { return local }}
	l.observe(src, false)
	local = local.Add(3 * time.Second) // three seconds later, by our clock
	if got, want := l.until(), src.Add(3*time.Second+time.Microsecond); !got.Equal(want) {
		t.Fatalf("until %s, want %s", got, want)
	}
	l.observe(src.Add(time.Hour), true) // a state stamped ahead of our estimate
	if got := l.until(); !got.After(src.Add(time.Hour)) {
		t.Fatalf("until %s is not after the last state", got)
	}
	if err := l.write(); err != nil {
		t.Fatal(err)
	}
	p, err := previousRun(dir)
	if err != nil || p == nil || p.Incarnation != "run1" || !p.Until.After(src.Add(time.Hour)) {
		t.Fatalf("read back %+v %v", p, err)
	}
	os.WriteFile(filepath.Join(dir, lifelineFile), []byte(`{"incarnation":"run1","unt`), 0o644)
	if p, err := previousRun(dir); p != nil || err != nil {
		t.Fatalf("torn file: %+v %v", p, err)
	}
}

// A value notified again keeps the time it changed at: it must not pull the
// lifeline back.
func TestLifelineIgnoresOldTimesNotifiedAgain(t *testing.T) {
	local := time.Date(2026, 12, 1, 4, 0, 0, 0, time.UTC)
	l := &lifeline{path: filepath.Join(t.TempDir(), lifelineFile), incarnation: "run1", now: func() time.Time { return local }}
	src := time.Date(2026, 11, 20, 11, 40, 0, 0, time.UTC)
	l.observe(src, false)                     // a count at 11:40
	l.observe(src.Add(-40*time.Minute), true) // the state, unchanged since 11:00, notified again
	if got := l.until(); got.Before(src) {
		t.Fatalf("until %s, before the newest reading %s", got, src)
	}
}
