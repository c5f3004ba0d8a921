// Package backoff paces retries: each pause twice the last up to a bound,
// with jitter, so that partitions or replicas failing together do not
// retry in lockstep. The services' retry loops (partition consumers, lease
// coordination, start-up waits, projection workers) all pace with it.
package backoff

import (
	"context"
	"math/rand/v2"
	"time"
)

// Backoff is the state of one retry loop. It is not safe for concurrent
// use.
type Backoff struct {
	initial, max, next time.Duration
}

// New returns a Backoff whose pauses start at initial and grow to max.
func New(initial, max time.Duration) *Backoff {
	return &Backoff{initial: initial, max: max, next: initial}
}

// Pause returns the next pause, between half and all of the current
// interval, and doubles the interval up to max.
func (b *Backoff) Pause() time.Duration {
	d := b.next/2 + rand.N(b.next/2+1)
	b.next = min(2*b.next, b.max)
	return d
}

// Wait sleeps for the next pause; false if ctx ended first.
func (b *Backoff) Wait(ctx context.Context) bool { return Sleep(ctx, b.Pause()) }

// Reset starts the pauses over from the initial interval, after a success
// that lasted.
func (b *Backoff) Reset() { b.next = b.initial }

// Sleep sleeps for d; false if ctx ended first.
func Sleep(ctx context.Context, d time.Duration) bool {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-ctx.Done():
		return false
	case <-t.C:
		return true
	}
}
