package main

import (
	"context"
	"errors"
	"fmt"
	"path/filepath"
	"slices"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/jetsource/jetsource/contract"
	"github.com/jetsource/jetsource/internal/aggregator"
	"github.com/jetsource/jetsource/internal/es"
	"github.com/jetsource/jetsource/internal/workload"
)

// benchLoad times loading a 1,000-event order from the cache, from its
// snapshot, and from its events alone, on one server (R1, default fsync
// interval). The aggregator builds the order from 1,000 commands, so its
// snapshot is what the aggregator writes for such an order.
func benchLoad(ctx context.Context, cfg config, t *targets) error {
	const events = 1000
	rule(fmt.Sprintf("Loading one %d-event order (R1)", events))
	cl, err := startCluster(filepath.Join(cfg.workDir, "load"), 1, false, "")
	if err != nil {
		return err
	}
	defer cl.stop()
	nc, err := nats.Connect(cl.url())
	if err != nil {
		return err
	}
	defer nc.Close()
	js, err := jetstream.New(nc)
	if err != nil {
		return err
	}
	if err := setupStreams(ctx, js, 1); err != nil {
		return err
	}
	agg, err := startAggregator(cl.url(), "")
	if err != nil {
		return err
	}
	cmds := workload.BigOrder("big", events)
	for _, c := range cmds {
		if _, err := js.PublishMsgAsync(c.Msg(), jetstream.WithStallWait(time.Minute)); err != nil {
			agg.stop()
			return err
		}
	}
	err = waitResult(ctx, js, contract.ResultSubject(cmds[len(cmds)-1].ID))
	agg.stop()
	if err != nil {
		return fmt.Errorf("waiting for the order to be built: %w", err)
	}
	store := es.NewStore(js, partitions)
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
		{"cold, from the snapshot", 1000, func() (es.Loaded[aggregator.Aggregate], bool, error) {
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
		p99 := times[r.n*99/100]
		fmt.Printf("  %-38s p50 %10s   p99 %10s   (%d loads)\n", r.name, us(p50s[i]), us(p99), r.n)
		if i == 1 {
			t.coldP99 = p99
		}
	}
	fmt.Printf("  snapshot: %d bytes of state at version %d; loading from it is %.1fx faster than from all events\n",
		len(snap.State), snap.Version, float64(p50s[2])/float64(p50s[1]))
	fmt.Printf("  today (issue 10): 40 KB snapshot, cold from the snapshot p99 5.1ms\n")
	return nil
}

// waitResult waits until a result is stored on subject.
func waitResult(ctx context.Context, js jetstream.JetStream, subject string) error {
	results, err := js.Stream(ctx, contract.ResultsStream)
	if err != nil {
		return err
	}
	for deadline := time.Now().Add(2 * time.Minute); ; time.Sleep(20 * time.Millisecond) {
		_, err := results.GetLastMsgForSubject(ctx, subject)
		if err == nil {
			return nil
		}
		if !errors.Is(err, jetstream.ErrMsgNotFound) || time.Now().After(deadline) {
			return err
		}
	}
}
