package projections_test

import (
	"context"
	"fmt"
	"sync/atomic"
	"testing"
	"time"

	"github.com/jetsource/jetsource/contract"
	"github.com/jetsource/jetsource/internal/projections"
	"github.com/jetsource/jetsource/internal/projections/readmodel"
)

// holdAt returns an after-hook that holds the nth Apply, after its rows are
// written and before they commit, and signals held when it does. With
// honourCtx it gives up when its context ends, and counts that in
// abandoned.
func holdAt(n int32, held chan<- struct{}, release <-chan struct{}, honourCtx bool, abandoned *atomic.Int32) func(context.Context, []contract.Event) error {
	var calls atomic.Int32
	return func(ctx context.Context, _ []contract.Event) error {
		if calls.Add(1) != n {
			return nil
		}
		held <- struct{}{}
		if !honourCtx {
			<-release
			return nil
		}
		select {
		case <-release:
			return nil
		case <-ctx.Done():
			abandoned.Add(1)
			return ctx.Err()
		}
	}
}

// TestCrashMidBatchLeavesNoTrace crashes runners in the middle of a batch,
// after the projection wrote its rows and before the commit, twice: once by
// killing their database sessions (as a crashed process or a cut network
// does), once by cancelling them with a drain timeout shorter than the
// batch. Restarted runners must leave every table exactly as if nothing had
// happened: no lost and no doubled rows.
func TestCrashMidBatchLeavesNoTrace(t *testing.T) {
	e := newEnv(t)
	f := newFeeder(e.store, 2)
	all := f.scripts("a", 150)
	f.run(t, all...)
	names := []string{readmodel.NameOrderSummary, readmodel.NameOrderHistory}
	check := func() {
		t.Helper()
		last := f.lastByPartition()
		for _, name := range names {
			e.waitCaughtUp(t, name, last)
		}
		compare(t, e.rows(t), fold(t, storedEvents(t, e.store, ids(all)), nil), "orders", "order_items", "order_history")
	}

	var (
		restarted []*replica
		abandoned atomic.Int32
	)
	crash := func(round string, honourCtx bool, kill func(r *replica)) {
		t.Helper()
		for _, r := range restarted {
			r.stop(t)
		}
		restarted = nil
		held := make(chan struct{}, len(names))
		release := make(chan struct{})
		var crashed []*replica
		for _, name := range names {
			p, _ := readmodel.New(name)
			cfg := projections.Config{
				Projection:   hook{Projection: p, after: holdAt(4, held, release, honourCtx, &abandoned)},
				BatchSize:    40,
				DrainTimeout: 200 * time.Millisecond,
			}
			crashed = append(crashed, e.start(t, fmt.Sprintf("%s-crash-%s", round, name), cfg))
		}
		for range names {
			select {
			case <-held:
			case <-time.After(20 * time.Second):
				t.Fatalf("%s: no runner reached its fourth batch", round)
			}
		}
		for _, r := range crashed {
			kill(r)
		}
		close(release)
		for _, r := range crashed {
			r.cancel()
			<-r.done
		}
		for _, name := range names {
			p, _ := readmodel.New(name)
			restarted = append(restarted, e.start(t, round+"-restart-"+name, projections.Config{Projection: p, BatchSize: 40}))
		}
		check()
	}

	crash("sessions", false, func(r *replica) { e.killConnections(t, r.name) })

	// The next round's events arrive while no runner is up.
	for _, r := range restarted {
		r.stop(t)
	}
	restarted = nil
	more := f.scripts("b", 80)
	f.run(t, more...)
	all = append(all, more...)
	// Cancelled while held: the drain times out and abandons the batch.
	crash("drain", true, func(r *replica) {
		r.cancel()
		<-r.done
	})
	if n := abandoned.Load(); n != int32(len(names)) {
		t.Errorf("%d held batches were abandoned at the drain timeout; want %d", n, len(names))
	}
}
