package projections_test

import (
	"context"
	"errors"
	"slices"
	"strings"
	"sync/atomic"
	"testing"

	"github.com/jetsource/jetsource/contract"
	"github.com/jetsource/jetsource/internal/es"
	"github.com/jetsource/jetsource/internal/natstest"
	"github.com/jetsource/jetsource/internal/order"
	"github.com/jetsource/jetsource/internal/projections"
	"github.com/jetsource/jetsource/internal/projections/readmodel"
)

// TestPoisonEventsAreDeadLetteredAndReplayed makes the projection fail on
// one event of order A and one of order D: each is dead-lettered after
// MaxAttempts, the later events of its order are parked behind it (also
// those appended afterwards), and every other order is projected. A retry
// while the fault persists fails again; once fixed, Retry applies A's event
// and replays its parked ones in order. Skip drops D's event and replays
// the rest. An undecodable message is dead-lettered too.
func TestPoisonEventsAreDeadLetteredAndReplayed(t *testing.T) {
	ctx := context.Background()
	e := newEnv(t)
	f := newFeeder(e.store, 4)
	a := fixedScript("ord-a",
		order.CreateOrder{CustomerID: "c-a", Currency: "USD"},
		order.AddItem{ProductID: "sku-1", Quantity: 1, UnitPriceCents: 100},
		order.AddItem{ProductID: "sku-2", Quantity: 2, UnitPriceCents: 250}, // version 3: poison
		order.AddItem{ProductID: "sku-1", Quantity: 1, UnitPriceCents: 100},
		order.SubmitOrder{},
		order.PayOrder{PaymentID: "pay-a", Method: "card"})
	d := fixedScript("ord-d",
		order.CreateOrder{CustomerID: "c-d", Currency: "EUR"},
		order.AddItem{ProductID: "sku-1", Quantity: 1, UnitPriceCents: 100},
		order.AddItem{ProductID: "sku-2", Quantity: 1, UnitPriceCents: 300}, // version 3: poison, skipped
		order.AddItem{ProductID: "sku-3", Quantity: 4, UnitPriceCents: 50},
		order.RemoveItem{ProductID: "sku-1"},
		order.SubmitOrder{})
	others := f.scripts("ord", 80)
	f.run(t, append(slices.Clone(others), a, d)...)

	// An undecodable message, and an event of the same order behind it.
	bad := "ord-bad"
	if _, err := e.js.Publish(ctx, contract.EventSubject(bad, natstest.Partitions), []byte("{not json")); err != nil {
		t.Fatal(err)
	}
	// The store's expected-sequence check refuses a first event after the
	// bad message, so the feeder starts from that subject's head.
	seq, err := e.store.LeaderLastSequence(ctx, bad)
	if err != nil {
		t.Fatal(err)
	}
	f.last[bad] = seq
	f.run(t, fixedScript(bad, order.CreateOrder{CustomerID: "c-bad", Currency: "USD"}))

	var poisonA, poisonD atomic.Bool
	poisonA.Store(true)
	poisonD.Store(true)
	proj := hook{Projection: readmodel.OrderSummary{}, before: func(_ context.Context, events []contract.Event) error {
		for _, ev := range events {
			if ev.Version == 3 && (ev.AggregateID == a.id && poisonA.Load() || ev.AggregateID == d.id && poisonD.Load()) {
				return errInjected
			}
		}
		return nil
	}}
	e.start(t, "r", projections.Config{Projection: proj, BatchSize: 50, MaxAttempts: 3})
	e.waitCaughtUp(t, readmodel.NameOrderSummary, f.lastByPartition())

	letters := func(orderID string) []projections.DeadLetter {
		t.Helper()
		ls, err := e.admin.DeadLetters(ctx, projections.DeadLetterQuery{Projection: readmodel.NameOrderSummary, OrderID: orderID})
		if err != nil {
			t.Fatal(err)
		}
		return ls
	}
	checkLetters := func(orderID string, want ...string) []projections.DeadLetter {
		t.Helper()
		ls := letters(orderID)
		var got []string
		for _, l := range ls {
			got = append(got, string(l.Status))
		}
		if !slices.Equal(got, want) {
			t.Fatalf("dead letters of %s: %v; want %v", orderID, got, want)
		}
		for i := 1; i < len(ls); i++ {
			if ls[i].StreamSequence <= ls[i-1].StreamSequence {
				t.Fatalf("dead letters of %s are not in stream order: %+v", orderID, ls)
			}
		}
		return ls
	}
	ls := checkLetters(a.id, "failed", "parked", "parked", "parked")
	if ls[0].EventVersion != 3 || ls[0].Attempts != 3 || !strings.Contains(ls[0].Error, errInjected.Error()) {
		t.Errorf("A's failed letter: %+v; want version 3, 3 attempts, the injected error", ls[0])
	}
	failedA := ls[0].ID
	checkLetters(d.id, "failed", "parked", "parked", "parked")
	lsBad := checkLetters(bad, "failed", "parked")
	if !strings.Contains(lsBad[0].Error, es.ErrCorrupt.Error()) || string(lsBad[0].Body) != "{not json" {
		t.Errorf("undecodable letter: %+v", lsBad[0])
	}

	// Every other order is complete; A and D stop before their poison.
	stored := storedEvents(t, e.store, append(ids(others), a.id, d.id))
	partial := map[string][]contract.Event{a.id: stored[a.id][:2], d.id: stored[d.id][:2]}
	for id, events := range stored {
		if id != a.id && id != d.id {
			partial[id] = events
		}
	}
	compare(t, e.rows(t), fold(t, partial, nil), "orders", "order_items")

	// An event of A that arrives now is parked too.
	a.commands = append(a.commands, order.ShipOrder{TrackingNumber: "trk-a", Carrier: "dhl"})
	f.step(t, a)
	e.waitCaughtUp(t, readmodel.NameOrderSummary, f.lastByPartition())
	checkLetters(a.id, "failed", "parked", "parked", "parked", "parked")

	// A retry while the fault persists fails again and changes nothing.
	res, err := e.admin.Retry(ctx, proj, failedA)
	if !errors.Is(err, projections.ErrStillFailing) || res.Failed != failedA || res.Applied != 0 {
		t.Fatalf("retry of a still failing event: %+v, %v; want ErrStillFailing", res, err)
	}
	if ls := checkLetters(a.id, "failed", "parked", "parked", "parked", "parked"); ls[0].Attempts != 4 {
		t.Errorf("attempts after a failed retry: %d; want 4", ls[0].Attempts)
	}
	if _, err := e.admin.Retry(ctx, proj, ls[1].ID); !errors.Is(err, projections.ErrNotFailed) {
		t.Errorf("retry of a parked letter: %v; want ErrNotFailed", err)
	}
	if _, err := e.admin.Retry(ctx, proj, 1<<40); !errors.Is(err, projections.ErrDeadLetterNotFound) {
		t.Errorf("retry of an unknown letter: %v; want ErrDeadLetterNotFound", err)
	}

	// Fixed: the retry applies A's event and replays the parked ones.
	poisonA.Store(false)
	res, err = e.admin.Retry(ctx, proj, failedA)
	if err != nil || res.Applied != 5 || res.Failed != 0 {
		t.Fatalf("retry: %+v, %v; want 5 events applied", res, err)
	}
	checkLetters(a.id, "retried", "retried", "retried", "retried", "retried")

	// A's next event is projected as usual.
	a.commands = append(a.commands, order.DeliverOrder{})
	f.step(t, a)
	e.waitCaughtUp(t, readmodel.NameOrderSummary, f.lastByPartition())
	checkLetters(a.id, "retried", "retried", "retried", "retried", "retried")

	// Skip drops D's poison; its parked events follow without it.
	failedD := letters(d.id)[0]
	if res, err := e.admin.Skip(ctx, proj, failedD.ID); err != nil || res.Applied != 3 {
		t.Fatalf("skip: %+v, %v; want 3 events applied", res, err)
	}
	checkLetters(d.id, "skipped", "retried", "retried", "retried")

	// The undecodable message can only be skipped; the order's next event
	// then applies.
	if _, err := e.admin.Retry(ctx, proj, lsBad[0].ID); !errors.Is(err, projections.ErrStillFailing) {
		t.Errorf("retry of an undecodable message: %v; want ErrStillFailing", err)
	}
	if _, err := e.admin.Skip(ctx, proj, lsBad[0].ID); err != nil {
		t.Fatal(err)
	}

	stored = storedEvents(t, e.store, append(ids(others), a.id, d.id))
	if stored[bad], err = e.store.Read(ctx, bad, lsBad[0].StreamSequence); err != nil || len(stored[bad]) != 1 {
		t.Fatalf("events of %s after the bad message: %v, %v", bad, stored[bad], err)
	}
	compare(t, e.rows(t), fold(t, stored, map[string]bool{failedD.EventID: true}), "orders", "order_items")
}
