package projections_test

import (
	"context"
	"fmt"
	"testing"
	"time"

	"github.com/jetsource/jetsource/internal/eventually"
	"github.com/jetsource/jetsource/internal/natstest"
	"github.com/jetsource/jetsource/internal/projections"
	"github.com/jetsource/jetsource/internal/projections/readmodel"
)

// TestReplicasSplitThePartitions runs two, then three replicas of one
// projection: each partition must be owned by exactly one of them, shares
// must be fair, and the tables must come out as one replica would make
// them. Then one replica stops cleanly, and one dies without cleaning up
// (its sessions end, its heartbeat row stays behind), and the survivors
// take over its partitions within a few seconds.
func TestReplicasSplitThePartitions(t *testing.T) {
	e := newEnv(t)
	f := newFeeder(e.store, 3)
	var all []*script
	wave := func(prefix string, n int) {
		s := f.scripts(prefix, n)
		f.run(t, s...)
		all = append(all, s...)
	}
	check := func() {
		t.Helper()
		e.waitCaughtUp(t, readmodel.NameOrderSummary, f.lastByPartition())
		compare(t, e.rows(t), fold(t, storedEvents(t, e.store, ids(all)), nil), "orders", "order_items")
	}
	cfg := projections.Config{Projection: readmodel.OrderSummary{}, BatchSize: 32}

	wave("a", 100)
	r1 := e.start(t, "r1", cfg)
	r2 := e.start(t, "r2", cfg)
	e.split(t, r1, r2)
	check()

	r3 := e.start(t, "r3", cfg)
	e.split(t, r1, r2, r3)
	var locks int
	if err := e.db.QueryRow(context.Background(), `SELECT count(*) FROM pg_locks WHERE locktype = 'advisory' AND granted`).Scan(&locks); err != nil || locks != natstest.Partitions {
		t.Errorf("%d advisory locks are held, %v; want one per partition", locks, err)
	}
	wave("b", 100)
	check()

	r2.stop(t)
	e.split(t, r1, r3)
	wave("c", 60)
	check()

	// r3 dies: its sessions end without it unlocking or leaving the
	// replica table; r1 sees the locks free at once and, once r3's
	// heartbeat is stale, takes its full share.
	e.killConnections(t, "r3")
	r3.cancel()
	<-r3.done
	if _, err := e.db.Exec(context.Background(), `INSERT INTO jetsource.projection_replicas (projection, replica_id)
		VALUES ($1, 'r3') ON CONFLICT (projection, replica_id) DO UPDATE SET heartbeat_at = now()`, readmodel.NameOrderSummary); err != nil {
		t.Fatal(err)
	}
	// r3 may have left the table on its way out before the row above was
	// written back; r1 then took every partition and gave half back when
	// the row reappeared. The split is only stable once the row is stale.
	ttl := time.Second // env.start's ReplicaTTL
	eventually.True(t, 10*ttl, "r3's heartbeat to go stale", func() bool {
		var stale bool
		err := e.db.QueryRow(context.Background(), `SELECT NOT EXISTS (SELECT FROM jetsource.projection_replicas
			WHERE projection = $1 AND replica_id = 'r3' AND heartbeat_at > now() - $2::interval)`,
			readmodel.NameOrderSummary, ttl).Scan(&stale)
		return err == nil && stale
	})
	e.split(t, r1)
	wave("d", 60)
	check()
}

// TestEveryReplicaGetsItsShare adds replicas one at a time, up to five. A
// newcomer must get partitions even when the others hold equal shares (16
// over 4 replicas), and five replicas must hold 3 or 4 partitions each.
// Then the replica first in id order stops, which moves the others' place
// in the order, and the four left must hold 4 each.
func TestEveryReplicaGetsItsShare(t *testing.T) {
	e := newEnv(t)
	f := newFeeder(e.store, 4)
	var all []*script
	wave := func(prefix string, n int) {
		t.Helper()
		s := f.scripts(prefix, n)
		f.run(t, s...)
		all = append(all, s...)
		e.waitCaughtUp(t, readmodel.NameOrderSummary, f.lastByPartition())
		compare(t, e.rows(t), fold(t, storedEvents(t, e.store, ids(all)), nil), "orders", "order_items")
	}
	cfg := projections.Config{Projection: readmodel.OrderSummary{}, BatchSize: 32}
	var rs []*replica
	for i := range 5 {
		rs = append(rs, e.start(t, fmt.Sprintf("s%d", i+1), cfg))
		e.split(t, rs...)
	}
	wave("a", 60)

	rs[0].stop(t)
	e.split(t, rs[1:]...)
	wave("b", 60)
}
