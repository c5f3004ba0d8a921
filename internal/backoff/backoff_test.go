package backoff_test

import (
	"context"
	"testing"
	"time"

	"github.com/jetsource/jetsource/internal/backoff"
)

func TestPausesDoubleUpToTheBoundWithJitter(t *testing.T) {
	b := backoff.New(100*time.Millisecond, 400*time.Millisecond)
	for i, interval := range []time.Duration{100, 200, 400, 400} {
		interval *= time.Millisecond
		if d := b.Pause(); d < interval/2 || d > interval {
			t.Fatalf("pause %d is %s; want between %s and %s", i, d, interval/2, interval)
		}
	}
	b.Reset()
	if d := b.Pause(); d > 100*time.Millisecond {
		t.Fatalf("after Reset the pause is %s; want at most 100ms", d)
	}
}

func TestWaitEndsWithTheContext(t *testing.T) {
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	if backoff.New(time.Hour, time.Hour).Wait(ctx) {
		t.Fatal("Wait returned true for an ended context")
	}
}
