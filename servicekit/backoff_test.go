package servicekit

import (
	"context"
	"testing"
	"time"
)

func TestBackoffGrowsJitteredAndCapped(t *testing.T) {
	b := Backoff(100*time.Millisecond, time.Second)
	lo, hi := 50*time.Millisecond, 150*time.Millisecond
	distinct := map[time.Duration]bool{}
	for i := range 8 {
		d := b.NextBackOff()
		if d < lo || d > hi {
			t.Fatalf("wait %d = %v, want within [%v, %v]", i+1, d, lo, hi)
		}
		distinct[d] = true
		lo, hi = min(lo*2, 500*time.Millisecond), min(hi*2, 1500*time.Millisecond)
	}
	if len(distinct) < 4 {
		t.Fatalf("waits %v: no jitter", distinct)
	}
	b.Reset()
	if d := b.NextBackOff(); d > 150*time.Millisecond {
		t.Fatalf("after Reset the wait is %v, want about 100ms", d)
	}
	if d := BackoffAfter(30, time.Second, time.Hour); d < 30*time.Minute || d > 90*time.Minute {
		t.Fatalf("after 30 failures the wait is %v, want about the 1 h cap", d)
	}
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	if Wait(ctx, Backoff(time.Hour, time.Hour)) {
		t.Fatal("Wait slept through a cancelled context")
	}
}
