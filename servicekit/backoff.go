package servicekit

import (
	"context"
	"time"

	"github.com/cenkalti/backoff/v5"
)

// Backoff returns the retry policy of every Takt loop that retries a transient
// failure (cenkalti/backoff's exponential backoff): the first wait is about
// initial, each next one twice the last, capped at max, and every wait is
// jittered by ±50 % so that many clients failing together do not retry together.
// Reset it after a success. It never gives up by itself: the caller's context
// ends the retries, and a deterministic failure must not be retried at all.
func Backoff(initial, max time.Duration) *backoff.ExponentialBackOff {
	b := &backoff.ExponentialBackOff{InitialInterval: initial, RandomizationFactor: 0.5, Multiplier: 2, MaxInterval: max}
	b.Reset()
	return b
}

// Wait sleeps for b's next wait and reports true, or reports false as soon as ctx
// ends.
func Wait(ctx context.Context, b backoff.BackOff) bool {
	t := time.NewTimer(b.NextBackOff())
	defer t.Stop()
	select {
	case <-t.C:
		return true
	case <-ctx.Done():
		return false
	}
}

// BackoffAfter returns the wait after the given number of consecutive failures
// (1 for the first) under Backoff(initial, max): for a retry that is scheduled
// (stored with a time) rather than slept.
func BackoffAfter(failures int, initial, max time.Duration) time.Duration {
	b := Backoff(initial, max)
	d := b.NextBackOff()
	for i := 1; i < failures && i < 64; i++ {
		d = b.NextBackOff()
	}
	return d
}
