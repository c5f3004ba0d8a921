package projections_test

import (
	"context"
	"errors"
	"fmt"
	"testing"
	"time"

	"github.com/jetsource/jetsource/contract"
	"github.com/jetsource/jetsource/internal/es"
	"github.com/jetsource/jetsource/internal/eventually"
	"github.com/jetsource/jetsource/internal/natstest"
	"github.com/jetsource/jetsource/internal/projections"
	"github.com/jetsource/jetsource/internal/projections/readmodel"
)

// TestLostEventsStopTheProjectionUntilRebuilt recreates the events stream
// under a projection and fills it with other events, more than before, so
// that every cursor points at a stored event, but not the one projected
// there. A runner must not project on top of that: it stops, turns not
// ready and reports the loss with both numbers, and Lag shows it. A
// rebuild from the new stream is the way out: the runner then goes on by
// itself, and the tables hold exactly the new stream's events.
func TestLostEventsStopTheProjectionUntilRebuilt(t *testing.T) {
	ctx := context.Background()
	e := newEnv(t)
	f := newFeeder(e.store, 9)
	f.run(t, f.scripts("a", 40)...)
	first := e.start(t, "first", projections.Config{Projection: readmodel.OrderSummary{}})
	e.waitCaughtUp(t, readmodel.NameOrderSummary, f.lastByPartition())
	first.stop(t)
	before, err := e.admin.Checkpoints(ctx, readmodel.NameOrderSummary)
	if err != nil {
		t.Fatal(err)
	}

	if err := e.js.DeleteStream(ctx, contract.EventsStream); err != nil {
		t.Fatal(err)
	}
	if err := es.Setup(ctx, e.js, natstest.Topology(natstest.Partitions)); err != nil {
		t.Fatal(err)
	}
	g := newFeeder(e.store, 10)
	refill := g.scripts("b", 80)
	g.run(t, refill...)
	var furthest uint64
	for _, cp := range before {
		furthest = max(furthest, cp.LastSequence)
	}
	if last := maxSeq(g.lastByPartition()); last <= furthest {
		t.Fatalf("the new stream ends at %d, not past the furthest cursor %d: the test would not show the event check", last, furthest)
	}

	r := e.start(t, "second", projections.Config{Projection: readmodel.OrderSummary{}})
	var loss *projections.LossError
	eventually.Holds(t, 20*time.Second, "the runner to report the loss", func() (bool, string) {
		return errors.As(r.Loss(), &loss), fmt.Sprint(r.Loss())
	})
	if !errors.Is(r.Loss(), projections.ErrEventsMissing) || r.Ready() || len(r.Owned()) != 0 ||
		loss.Cursor != before[loss.Partition].LastSequence || loss.StreamLast != maxSeq(g.lastByPartition()) {
		t.Fatalf("loss %+v, ready %v, owned %v", loss, r.Ready(), r.Owned())
	}
	lags, err := e.admin.Lag(ctx, readmodel.NameOrderSummary)
	if err != nil {
		t.Fatal(err)
	}
	for _, l := range lags {
		if (l.Loss != nil) != (before[l.Partition].LastSequence > 0) {
			t.Errorf("partition %d at %d: lag reports loss %v", l.Partition, l.Cursor, l.Loss)
		}
	}
	after, err := e.admin.Checkpoints(ctx, readmodel.NameOrderSummary)
	if err != nil {
		t.Fatal(err)
	}
	for p, cp := range after {
		if cp.LastSequence != before[p].LastSequence {
			t.Errorf("partition %d moved from %d to %d on top of the loss", p, before[p].LastSequence, cp.LastSequence)
		}
	}

	if _, err := e.admin.Rebuild(ctx, readmodel.OrderSummary{}, projections.RebuildOptions{}); err != nil {
		t.Fatal(err)
	}
	eventually.Holds(t, 20*time.Second, "the runner to go on after the rebuild", func() (bool, string) {
		return r.Loss() == nil && r.Ready() && len(r.Owned()) == natstest.Partitions, fmt.Sprint(r.Loss(), r.Owned())
	})
	more := g.scripts("c", 10)
	g.run(t, more...)
	e.waitCaughtUp(t, readmodel.NameOrderSummary, g.lastByPartition())
	compare(t, e.rows(t), fold(t, storedEvents(t, e.store, ids(append(refill, more...))), nil), "orders", "order_items")
}

func maxSeq(bySeq map[int]uint64) uint64 {
	var m uint64
	for _, s := range bySeq {
		m = max(m, s)
	}
	return m
}
