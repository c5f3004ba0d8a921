package es_test

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"sync"
	"testing"
	"time"

	"github.com/jetsource/jetsource/contract"
	"github.com/jetsource/jetsource/internal/es"
	"github.com/jetsource/jetsource/internal/natstest"
	"github.com/jetsource/jetsource/internal/order"
)

var orderFold = es.Fold[order.State]{
	Zero: order.New,
	Apply: func(s order.State, e contract.Event) (order.State, error) {
		ev, err := order.ParseEvent(e.Type, e.Data)
		if err != nil {
			return s, err
		}
		return order.Evolve(s, ev), nil
	},
}

// decideAndAppend is a minimal command handler: load, decide, append, and on
// a conflict reload and decide again.
func decideAndAppend(ctx context.Context, repo *es.Repository[order.State], id string, cmd order.Command) (int, error) {
	return decideAndAppendAt(ctx, repo, id, cmd, time.Now())
}

// decideAndAppendAt is decideAndAppend with the events stamped at.
func decideAndAppendAt(ctx context.Context, repo *es.Repository[order.State], id string, cmd order.Command, at time.Time) (int, error) {
	l, _, err := repo.Load(ctx, id)
	if err != nil {
		return 0, err
	}
	for attempt := 1; ; attempt++ {
		decided, err := order.Decide(l.State, cmd)
		if err != nil {
			return attempt, err
		}
		envs := make([]contract.Event, len(decided))
		next := l.State
		for i, d := range decided {
			data, _ := json.Marshal(d)
			envs[i] = contract.Event{ID: es.NewEventID(at), AggregateType: order.AggregateType, AggregateID: id, Type: d.EventType(),
				SchemaVersion: contract.SchemaVersion(d.EventType()), Version: l.Version + int64(i) + 1, Data: data,
				Metadata: contract.EventMetadata{Timestamp: contract.Time{Time: at}}}
			next = order.Evolve(next, d)
		}
		_, err = repo.Append(ctx, id, l, envs, next)
		if !errors.Is(err, es.ErrConflict) {
			return attempt, err
		}
		if l, err = repo.Reload(ctx, id); err != nil {
			return attempt, err
		}
	}
}

// TestConcurrentWritersLoseNoUpdate is the store conformance test: 16
// writers, each with its own cache, race commands on one order.
func TestConcurrentWritersLoseNoUpdate(t *testing.T) {
	ctx := context.Background()
	_, _, js := natstest.Streams(t, natstest.Partitions)
	store := es.NewStore(js, natstest.Partitions)
	setup := es.NewRepository(store, orderFold, es.RepositoryConfig{})
	if _, err := decideAndAppend(ctx, setup, "ord-race", order.CreateOrder{CustomerID: "c"}); err != nil {
		t.Fatal(err)
	}
	const writers, perWriter = 16, 20
	var wg sync.WaitGroup
	var mu sync.Mutex
	conflicts := 0
	errs := make(chan error, writers)
	for w := range writers {
		wg.Go(func() {
			repo := es.NewRepository(store, orderFold, es.RepositoryConfig{CacheSize: 10, SnapshotEvery: 7, SnapshotSchema: 1})
			for range perWriter {
				attempts, err := decideAndAppend(ctx, repo, "ord-race", order.AddItem{ProductID: fmt.Sprintf("p-%d", w), Quantity: 1, UnitPriceCents: 10})
				if err != nil {
					errs <- err
					return
				}
				mu.Lock()
				conflicts += attempts - 1
				mu.Unlock()
			}
		})
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Fatalf("writer: %v", err)
	}
	t.Logf("%d appends needed %d conflict retries", writers*perWriter, conflicts)

	events, err := store.Read(ctx, "ord-race", 0)
	if err != nil {
		t.Fatal(err)
	}
	if len(events) != 1+writers*perWriter {
		t.Fatalf("stored %d events, want %d", len(events), 1+writers*perWriter)
	}
	ids := map[string]bool{}
	for i, e := range events {
		if e.Version != int64(i+1) {
			t.Fatalf("event %d has version %d: versions must be 1..n without gaps", i, e.Version)
		}
		if ids[e.ID] {
			t.Fatalf("event id %s stored twice", e.ID)
		}
		ids[e.ID] = true
	}
	l, err := es.NewRepository(store, orderFold, es.RepositoryConfig{}).Reload(ctx, "ord-race")
	if err != nil {
		t.Fatal(err)
	}
	if len(l.State.Items) != writers || l.State.TotalCents != writers*perWriter*10 {
		t.Fatalf("final state lost updates: %d lines, total %d", len(l.State.Items), l.State.TotalCents)
	}
	for _, it := range l.State.Items {
		if it.Quantity != perWriter {
			t.Fatalf("product %s has quantity %d, want %d", it.ProductID, it.Quantity, perWriter)
		}
	}
}

func TestRepositoryLoadsFromSnapshotAndCache(t *testing.T) {
	ctx := context.Background()
	_, _, js := natstest.Streams(t, natstest.Partitions)
	store := es.NewStore(js, natstest.Partitions)
	cfg := es.RepositoryConfig{CacheSize: 100, SnapshotEvery: 10, SnapshotSchema: 1}
	repo := es.NewRepository(store, orderFold, cfg)
	if _, err := decideAndAppend(ctx, repo, "ord-s", order.CreateOrder{CustomerID: "c"}); err != nil {
		t.Fatal(err)
	}
	for i := range 24 {
		if _, err := decideAndAppend(ctx, repo, "ord-s", order.AddItem{ProductID: fmt.Sprintf("p%d", i%5), Quantity: 1, UnitPriceCents: 3}); err != nil {
			t.Fatal(err)
		}
	}
	snap, ok, err := store.LoadSnapshot(ctx, "ord-s")
	if err != nil || !ok || snap.Version != 20 || snap.SchemaVersion != 1 {
		t.Fatalf("snapshot = %+v, %v, %v; want one at version 20", snap, ok, err)
	}

	cached, hit, err := repo.Load(ctx, "ord-s")
	if err != nil || !hit {
		t.Fatalf("Load after appends: hit=%v err=%v", hit, err)
	}
	fresh := es.NewRepository(store, orderFold, cfg)
	cold, hit, err := fresh.Load(ctx, "ord-s")
	if err != nil || hit {
		t.Fatalf("cold Load: hit=%v err=%v", hit, err)
	}
	noSnap, err := es.NewRepository(store, orderFold, es.RepositoryConfig{}).Reload(ctx, "ord-s")
	if err != nil {
		t.Fatal(err)
	}
	for name, l := range map[string]es.Loaded[order.State]{"cached": cached, "from snapshot": cold} {
		if l.Version != 25 || l.Sequence != noSnap.Sequence || l.State.TotalCents != noSnap.State.TotalCents || len(l.State.Items) != 5 {
			t.Fatalf("%s load %+v differs from the fold of all events %+v", name, l, noSnap)
		}
	}

	// A snapshot of another schema version is ignored, not trusted.
	other := es.NewRepository(store, orderFold, es.RepositoryConfig{SnapshotEvery: 10, SnapshotSchema: 2})
	if l, _, err := other.Load(ctx, "ord-s"); err != nil || l.Version != 25 || l.State.TotalCents != noSnap.State.TotalCents {
		t.Fatalf("load ignoring a foreign snapshot: %+v %v", l, err)
	}
	// So is a snapshot whose state does not decode.
	if err := store.SaveSnapshot(ctx, es.Snapshot{AggregateID: "ord-s", Version: 20, Sequence: snap.Sequence, SchemaVersion: 1, State: json.RawMessage(`"garbage"`)}); err != nil {
		t.Fatal(err)
	}
	if l, _, err := es.NewRepository(store, orderFold, cfg).Load(ctx, "ord-s"); err != nil || l.Version != 25 || l.State.TotalCents != noSnap.State.TotalCents {
		t.Fatalf("load past an unreadable snapshot: %+v %v", l, err)
	}
}

func TestLoadAsOf(t *testing.T) {
	ctx := context.Background()
	_, _, js := natstest.Streams(t, natstest.Partitions)
	store := es.NewStore(js, natstest.Partitions)
	repo := es.NewRepository(store, orderFold, es.RepositoryConfig{CacheSize: 10})
	created := time.Date(2026, 11, 23, 10, 0, 0, 0, time.UTC)
	between, submitted := created.Add(time.Minute), created.Add(2*time.Minute)
	if _, err := decideAndAppendAt(ctx, repo, "ord-t", order.CreateOrder{CustomerID: "c", Items: []order.AddItem{{ProductID: "a", Quantity: 1, UnitPriceCents: 100}}}, created); err != nil {
		t.Fatal(err)
	}
	if _, err := decideAndAppendAt(ctx, repo, "ord-t", order.SubmitOrder{}, submitted); err != nil {
		t.Fatal(err)
	}
	v1, err := repo.LoadAsOf(ctx, "ord-t", es.AsOf{Version: 1})
	if err != nil || v1.Version != 1 || v1.State.Status != order.StatusDraft || len(v1.State.Items) != 0 {
		t.Fatalf("as of version 1: %+v %v", v1, err)
	}
	atTime, err := repo.LoadAsOf(ctx, "ord-t", es.AsOf{Time: between})
	if err != nil || atTime.Version != 2 || atTime.State.Status != order.StatusDraft || atTime.State.TotalCents != 100 {
		t.Fatalf("as of %s: %+v %v", between, atTime, err)
	}
	now, err := repo.LoadAsOf(ctx, "ord-t", es.AsOf{})
	if err != nil || now.Version != 3 || now.State.Status != order.StatusSubmitted {
		t.Fatalf("unbounded: %+v %v", now, err)
	}
}
