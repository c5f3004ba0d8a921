package aggregator_test

import (
	"context"
	"encoding/json"
	"fmt"
	"testing"
	"time"

	"github.com/jetsource/jetsource/contract"
	"github.com/jetsource/jetsource/internal/aggregator"
	"github.com/jetsource/jetsource/internal/es"
)

// resendWithoutID publishes c again without Nats-Msg-Id, as after the
// duplicate window, and waits until the aggregator replayed an outcome.
func (h *harness) resendWithoutID(count *counter, c cmd) contract.Result {
	h.t.Helper()
	before := count.replayed.Load()
	body, _ := json.Marshal(c)
	h.publish(contract.CommandSubject(c.OrderID, c.Type), "", body)
	waitCount(h.t, &count.replayed, before+1, "replayed outcomes")
	return h.waitResult(contract.ResultSubject(c.ID))
}

// TestResendAfterSnapshotReturnsTheFirstOutcome re-sends commands to an
// aggregator that loaded the order from a snapshot, which does not list
// command ids: one folded into the snapshot and one after it are both
// recognised, and a new command is not mistaken for a re-send.
func TestResendAfterSnapshotReturnsTheFirstOutcome(t *testing.T) {
	count := &counter{}
	cfg := aggregator.Config{SnapshotEvery: 10, Observer: count}
	h := startHarness(t, cfg)
	id := newID("ord")
	cmds := []cmd{{ID: newID("cmd"), Type: "CreateOrder", OrderID: id, Data: map[string]any{"customerId": "c"}}}
	for i := range 25 {
		cmds = append(cmds, addItem(id, fmt.Sprintf("p-%02d", i)))
	}
	results := make([]contract.Result, len(cmds))
	for i, c := range cmds {
		results[i] = accepted(t, h.send(c))
	}
	if snap, ok, err := h.store.LoadSnapshot(context.Background(), id); err != nil || !ok || snap.Version != 20 {
		t.Fatalf("snapshot %+v %v %v, want one at version 20", snap, ok, err)
	}
	stored := h.totalEvents()

	h.stop()
	h.stop = h.run(cfg) // a cold cache: the order loads from its snapshot
	for _, i := range []int{3, 24} {
		again := h.resendWithoutID(count, cmds[i])
		if again.Status != contract.StatusAccepted || again.EventIDs[0] != results[i].EventIDs[0] || again.Version != results[i].Version {
			t.Fatalf("re-sent command %d: %+v, first %+v", i, again, results[i])
		}
	}
	if r := accepted(t, h.send(addItem(id, "new"))); r.Version != 27 {
		t.Fatalf("new command at version %d, want 27", r.Version)
	}
	if n := h.totalEvents(); n != stored+1 {
		t.Fatalf("%d events appended, want 1", n-stored)
	}
	if n := count.snapshotsIgnored.Load(); n != 0 {
		t.Fatalf("%d snapshots ignored", n)
	}
}

// TestUnusableSnapshotsAreIgnoredAndCounted stores snapshots a build must
// not trust: of another schema version, and one that covers events the
// stream does not have. Each is ignored, counted, and the order is folded
// from its events.
func TestUnusableSnapshotsAreIgnoredAndCounted(t *testing.T) {
	count := &counter{}
	cfg := aggregator.Config{Observer: count}
	h := startHarness(t, cfg)
	ctx := context.Background()
	id := newID("ord")
	accepted(t, h.send(cmd{ID: newID("cmd"), Type: "CreateOrder", OrderID: id, Data: map[string]any{"customerId": "c"}}))
	accepted(t, h.send(addItem(id, "a")))
	last := h.events(id)[1].Sequence
	bogus := json.RawMessage(`{"order":{"id":"` + id + `","status":"submitted","totalCents":0,"version":2},"handledCommands":{"layers":[]}}`)
	for i, snap := range []es.Snapshot{
		{AggregateID: id, Version: 2, Sequence: last, SchemaVersion: 1, State: json.RawMessage(`{"order":{"id":"x","version":2}}`)},
		{AggregateID: id, Version: 2, Sequence: last + 1000, SchemaVersion: 2, State: bogus},
		{AggregateID: id, Version: 2, Sequence: last, SchemaVersion: 2, State: json.RawMessage(`{"order":{"id":"x"}}`)},
	} {
		snap.TakenAt = contract.Time{Time: time.Now()}
		if err := h.store.SaveSnapshot(ctx, snap); err != nil {
			t.Fatal(err)
		}
		h.stop()
		h.stop = h.run(cfg)
		// A draft order takes items: the snapshot's "submitted" is not used.
		if r := accepted(t, h.send(addItem(id, fmt.Sprintf("b-%d", i)))); r.Version != int64(3+i) {
			t.Fatalf("snapshot %d: command at version %d, want %d", i, r.Version, 3+i)
		}
		if n := count.snapshotsIgnored.Load(); n != int64(i+1) {
			t.Fatalf("snapshot %d: %d snapshots ignored, want %d", i, n, i+1)
		}
	}
}
