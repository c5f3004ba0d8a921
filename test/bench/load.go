package main

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"time"

	"github.com/nats-io/nats.go/jetstream"

	"github.com/jetsource/jetsource/internal/aggregator"
	"github.com/jetsource/jetsource/internal/es"
	"github.com/jetsource/jetsource/internal/workload"
)

// benchLoad times loading a 1,000-event order from the cache, from its
// snapshot, and from its events alone. The order is built by the aggregator
// from 1,000 commands, so its snapshot carries 1,000 command ids.
func benchLoad(ctx context.Context) error {
	const events = 1000
	rule(fmt.Sprintf("Loading one %d-event order", events))
	e, err := newEnv(ctx, true)
	if err != nil {
		return err
	}
	defer e.close()
	cmds := workload.BigOrder("big", events)
	for _, c := range cmds {
		if _, err := e.js.PublishMsgAsync(c.Msg()); err != nil {
			return err
		}
	}
	results, err := e.js.Stream(ctx, es.ResultsStream)
	if err != nil {
		return err
	}
	last := es.ResultSubject(cmds[len(cmds)-1].ID)
	for deadline := time.Now().Add(time.Minute); ; time.Sleep(20 * time.Millisecond) {
		if _, err := results.GetLastMsgForSubject(ctx, last); err == nil {
			break
		} else if !errors.Is(err, jetstream.ErrMsgNotFound) || time.Now().After(deadline) {
			return fmt.Errorf("waiting for the order to be built: %v", err)
		}
	}
	store := es.NewStore(e.js, partitions, nil)
	orderID := cmds[0].OrderID
	snap, ok, err := store.LoadSnapshot(ctx, orderID)
	if err != nil || !ok {
		return fmt.Errorf("no snapshot of the order: %v", err)
	}

	cached := aggregator.NewRepository(store, es.RepositoryConfig{CacheSize: 10})
	rows := []struct {
		name string
		n    int
		load func() (es.Loaded[aggregator.Aggregate], bool, error)
	}{
		{"cached (in-memory LRU)", 10_000, func() (es.Loaded[aggregator.Aggregate], bool, error) {
			return cached.Load(ctx, orderID)
		}},
		{"cold, from the snapshot", 300, func() (es.Loaded[aggregator.Aggregate], bool, error) {
			return aggregator.NewRepository(store, es.RepositoryConfig{SnapshotEvery: 100}).Load(ctx, orderID)
		}},
		{"cold, from all events (no snapshot)", 100, func() (es.Loaded[aggregator.Aggregate], bool, error) {
			return aggregator.NewRepository(store, es.RepositoryConfig{}).Load(ctx, orderID)
		}},
	}
	p50s := make([]time.Duration, len(rows))
	for i, r := range rows {
		times := make([]time.Duration, r.n)
		for j := range r.n {
			start := time.Now()
			l, _, err := r.load()
			times[j] = time.Since(start)
			if err != nil {
				return fmt.Errorf("%s: %w", r.name, err)
			}
			if l.Version != events {
				return fmt.Errorf("%s: loaded version %d, want %d", r.name, l.Version, events)
			}
		}
		slices.Sort(times)
		p50s[i] = times[r.n/2]
		fmt.Printf("  %-38s p50 %10s   p99 %10s\n", r.name, us(p50s[i]), us(times[r.n*99/100]))
	}
	fmt.Printf("  snapshot: %d bytes at version %d; loading from it is %.1fx faster than from all events (target: cold with snapshot ≤ 5ms)\n",
		len(snap.State), snap.Version, float64(p50s[2])/float64(p50s[1]))
	return nil
}

func us(d time.Duration) string { return fmt.Sprintf("%.1fµs", float64(d.Nanoseconds())/1000) }
