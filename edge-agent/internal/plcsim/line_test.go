package plcsim

import (
	"reflect"
	"testing"
	"time"
)

func TestSameSeedSameLine(t *testing.T) {
	start := time.Date(2026, 11, 2, 6, 0, 0, 0, time.UTC)
	a := NewLine(Config{Seed: 7, Machines: 4, Start: start})
	b := NewLine(Config{Seed: 7, Machines: 4, Start: start})
	c := NewLine(Config{Seed: 8, Machines: 4, Start: start})
	for range 8 * 60 { // eight simulated hours, a minute at a time
		a.Advance(time.Minute)
		b.Advance(time.Minute)
		c.Advance(time.Minute)
	}
	same := true
	for i := range 4 {
		if !reflect.DeepEqual(a.Snapshot(i), b.Snapshot(i)) {
			t.Fatalf("machine %d differs between two lines of the same seed:\n%+v\n%+v", i, a.Snapshot(i), b.Snapshot(i))
		}
		same = same && reflect.DeepEqual(a.Snapshot(i), c.Snapshot(i))
	}
	if same {
		t.Fatal("two seeds gave the same line")
	}
}

// TestLineBehavesLikeALine checks over a simulated day that the line shows what OEE
// is made of: running most of the time, breakdowns with reasons, micro-stops,
// changeovers, planned breaks, scrap, and speed losses.
func TestLineBehavesLikeALine(t *testing.T) {
	l := NewLine(Config{Seed: 3, Machines: 1})
	seen := map[uint16]time.Duration{}
	reasons := map[uint16]bool{}
	const step = time.Second
	for range 24 * 3600 {
		l.Advance(step)
		m := l.Snapshot(0)
		seen[m.State] += step
		if m.State == CodeBreakdown {
			reasons[m.Reason] = true
		}
	}
	m := l.Snapshot(0)
	for _, code := range []uint16{CodeRunning, CodeChangeover, CodeBreakdown, CodeMicroStop, CodeStarved, CodePlannedStop} {
		if seen[code] == 0 {
			t.Errorf("state %d never happened in a day: %v", code, seen)
		}
	}
	if seen[CodeRunning] < 12*time.Hour {
		t.Errorf("running only %s of a day", seen[CodeRunning])
	}
	if len(reasons) < 2 {
		t.Errorf("breakdown reasons seen: %v", reasons)
	}
	if m.Scrap == 0 || m.Good+m.Scrap != m.Total {
		t.Errorf("counts: total %d good %d scrap %d", m.Total, m.Good, m.Scrap)
	}
	ideal := uint32(seen[CodeRunning] / m.IdealCycle)
	if m.Total >= ideal || m.Total < ideal*8/10 {
		t.Errorf("%d parts in %s of running at an ideal %s (ideal %d): want a speed loss of a few percent", m.Total, seen[CodeRunning], m.IdealCycle, ideal)
	}
	if m.Total < 1<<16 {
		t.Logf("total %d has not wrapped the 16-bit register in a day", m.Total)
	}
}

func TestScriptedLine(t *testing.T) {
	start := time.Date(2026, 11, 2, 6, 0, 0, 0, time.UTC)
	l := NewLine(Config{Machines: 1, Start: start, Script: []Segment{
		{For: 10 * time.Minute, State: CodeRunning, Cycle: 500 * time.Millisecond},
		{For: 5 * time.Minute, State: CodeBreakdown, Reason: 102},
		{For: 10 * time.Minute, State: CodeRunning, Cycle: time.Second},
	}})
	l.Advance(12 * time.Minute)
	m := l.Snapshot(0)
	if m.State != CodeBreakdown || m.Reason != 102 || !m.StateSince.Equal(start.Add(10*time.Minute)) {
		t.Fatalf("at 12 min: %+v", m)
	}
	if m.Total != 1200 || m.Scrap != 24 || !m.CountSince.Equal(start.Add(10*time.Minute)) {
		t.Fatalf("parts after 10 min at 0.5 s: %d (scrap %d) last at %v", m.Total, m.Scrap, m.CountSince)
	}
	l.Advance(time.Hour)
	if m := l.Snapshot(0); m.State != CodeNotScheduled || m.Total != 1800 || !l.Now().Equal(start.Add(72*time.Minute)) {
		t.Fatalf("after the script: %+v at %v", m, l.Now())
	}
}
