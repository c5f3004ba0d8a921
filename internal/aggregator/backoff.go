package aggregator

import (
	"context"
	"math/rand/v2"
	"time"
)

// backoff waits exponentially longer between attempts, with jitter so that
// partitions failing together do not retry in lockstep.
type backoff struct {
	next, max time.Duration
}

func newBackoff(initial, max time.Duration) *backoff { return &backoff{next: initial, max: max} }

// wait sleeps for the next interval; false if ctx ended first.
func (b *backoff) wait(ctx context.Context) bool {
	d := b.next/2 + rand.N(b.next/2+1)
	b.next = min(2*b.next, b.max)
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-ctx.Done():
		return false
	case <-t.C:
		return true
	}
}
