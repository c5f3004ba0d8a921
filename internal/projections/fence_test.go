package projections_test

import (
	"context"
	"fmt"
	"slices"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/jetsource/jetsource/contract"
	"github.com/jetsource/jetsource/internal/eventually"
	"github.com/jetsource/jetsource/internal/natstest"
	"github.com/jetsource/jetsource/internal/projections"
	"github.com/jetsource/jetsource/internal/projections/readmodel"
)

// TestCheckpointCASStopsAStaleWriter moves a partition's checkpoint, as a
// replica that took the partition over or a rebuild swap would, while the
// runner has a batch of that partition in flight. The runner's batch
// commits (it holds the checkpoint row); once the checkpoint has moved,
// the runner's next batch finds it moved: it writes nothing and continues
// from the new checkpoint, so events the other writer claimed are never
// applied by it, and events after the new checkpoint are. When the batch
// in flight commits, the waiting writer and the runner's next batch race
// for the row (PostgreSQL does not queue them), so one more batch of the
// runner may commit first: the claimed events are those after the
// checkpoint the writer found, not after the batch in flight.
func TestCheckpointCASStopsAStaleWriter(t *testing.T) {
	ctx := context.Background()
	e := newEnv(t)
	f := newFeeder(e.store, 6)
	var all []*script
	wave := func(prefix string, n int) {
		s := f.scripts(prefix, n)
		f.run(t, s...)
		all = append(all, s...)
	}
	wave("a", 40)
	const p = 3
	var (
		armed   atomic.Bool
		held    = make(chan struct{}, 1)
		release = make(chan struct{})
	)
	proj := hook{Projection: readmodel.OrderSummary{}, after: func(_ context.Context, events []contract.Event) error {
		if contract.Partition(events[0].AggregateID, natstest.Partitions) == p && armed.CompareAndSwap(true, false) {
			held <- struct{}{}
			<-release
		}
		return nil
	}}
	// Small batches: a batch that slips in before the writer cannot take
	// every event the writer claims.
	e.start(t, "r", projections.Config{Projection: proj, BatchSize: 4})
	e.waitCaughtUp(t, readmodel.NameOrderSummary, f.lastByPartition())

	armed.Store(true)
	wave("b", 40)
	<-held
	wave("c", 40)
	claimed := f.lastByPartition()[p]

	// The other writer waits for the row lock of the batch in flight, and
	// reports the checkpoint it found once it holds the row.
	moved := make(chan error, 1)
	var found uint64
	go func() {
		// It does not record the event id there: the cursor is then
		// checked against the stream by its sequence alone.
		err := e.db.QueryRow(ctx, `/* other writer */ WITH old AS (
				SELECT last_sequence FROM jetsource.projection_checkpoints
				WHERE projection = 'order_summary' AND partition = $2 FOR UPDATE)
			UPDATE jetsource.projection_checkpoints c SET last_sequence = $1, last_event_id = ''
			FROM old WHERE c.projection = 'order_summary' AND c.partition = $2
			RETURNING old.last_sequence`, claimed, p).Scan(&found)
		moved <- err
	}()
	eventually.Holds(t, 10*time.Second, "the other writer to wait for the checkpoint row", func() (bool, string) {
		var waiting int
		err := e.db.QueryRow(ctx, `SELECT count(*) FROM pg_stat_activity WHERE datname = current_database()
			AND wait_event_type = 'Lock' AND query LIKE '/* other writer */%'`).Scan(&waiting)
		return err == nil && waiting == 1, fmt.Sprint(err)
	})
	close(release)
	if err := <-moved; err != nil {
		t.Fatal(err)
	}
	t.Logf("the other writer found partition %d's checkpoint at %d and set it to %d", p, found, claimed)
	wave("d", 40)
	e.waitCaughtUp(t, readmodel.NameOrderSummary, f.lastByPartition())

	// Partition p has the events up to the checkpoint the writer found and
	// after the one it set, nothing in between; the other partitions have
	// everything.
	stored := storedEvents(t, e.store, ids(all))
	skip := map[string]bool{}
	skipped := 0
	for _, events := range stored {
		for _, ev := range events {
			if contract.Partition(ev.AggregateID, natstest.Partitions) == p && ev.Sequence > found && ev.Sequence <= claimed {
				skip[ev.ID] = true
				skipped++
			}
		}
	}
	if skipped == 0 {
		t.Fatal("the moved checkpoint claims no events; the test proves nothing")
	}
	compare(t, e.rows(t), fold(t, stored, skip), "orders", "order_items")
}

// commits records, per partition, the furthest cursor a replica's
// committed batches reached.
type commits struct {
	mu   sync.Mutex
	last map[int]uint64
}

func (c *commits) BatchCommitted(s projections.BatchStats) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.last[s.Partition] = max(c.last[s.Partition], s.Cursor)
}

func (c *commits) OwnershipChanged(string, []int) {}

func (c *commits) reached(p int) uint64 {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.last[p]
}

// TestReplicaThatLostItsLockStopsWriting ends a replica's lock session while
// it is in the middle of a batch, and lets a successor claim the partition
// before the batch goes on. The stale replica's heartbeat is an hour away,
// so only the owner epoch can stop it: whatever the scheduling, a batch
// that checks its epoch after the claim finds another one and commits
// nothing (and a claim waits for a batch that has checked). The successor
// then projects every event exactly once. Nothing here depends on timing:
// the batch waits on a channel until the claim is committed.
func TestReplicaThatLostItsLockStopsWriting(t *testing.T) {
	ctx := context.Background()
	e := newEnv(t)
	f := newFeeder(e.store, 7)
	all := f.scripts("a", 40)
	f.run(t, all...)

	var (
		armed   atomic.Bool
		held    = make(chan struct{}, 1)
		release = make(chan struct{})
	)
	proj := hook{Projection: readmodel.OrderHistory{}, after: func(context.Context, []contract.Event) error {
		if armed.CompareAndSwap(true, false) {
			held <- struct{}{}
			<-release
		}
		return nil
	}}
	seen := &commits{last: map[int]uint64{}}
	stale := e.start(t, "stale", projections.Config{Projection: proj, Observer: seen,
		Heartbeat: time.Hour, ReplicaTTL: 2 * time.Hour})
	e.waitCaughtUp(t, readmodel.NameOrderHistory, f.lastByPartition())

	// New orders of one partition only, so no other partition has work.
	const p = 5
	head := f.lastByPartition()[p]
	var more []*script
	for i := 0; len(more) < 10; i++ {
		if id := fmt.Sprintf("b-%d", i); contract.Partition(id, natstest.Partitions) == p {
			more = append(more, newScript(f.rng, id))
		}
	}
	armed.Store(true)
	f.run(t, more...)
	all = append(all, more...)
	<-held

	var pid int
	if err := e.db.QueryRow(ctx, `SELECT DISTINCT l.pid FROM pg_locks l JOIN pg_stat_activity a USING (pid)
		WHERE l.locktype = 'advisory' AND a.application_name = 'stale'`).Scan(&pid); err != nil {
		t.Fatal(err)
	}
	// With a timeout, pg_terminate_backend waits until the session is gone,
	// and its advisory locks with it.
	if _, err := e.db.Exec(ctx, "SELECT pg_terminate_backend($1, 5000)", pid); err != nil {
		t.Fatal(err)
	}
	successor := e.start(t, "successor", projections.Config{Projection: readmodel.OrderHistory{}})
	eventually.Holds(t, 20*time.Second, "the successor to claim the partition", func() (bool, string) {
		return slices.Contains(successor.Owned(), p), fmt.Sprint("successor owns ", successor.Owned())
	})
	close(release)
	e.waitCaughtUp(t, readmodel.NameOrderHistory, f.lastByPartition())
	stale.stop(t)
	if reached := seen.reached(p); reached > head {
		t.Errorf("the replica without its lock committed partition %d up to %d after the successor claimed it at %d", p, reached, head)
	}
	compare(t, e.rows(t), fold(t, storedEvents(t, e.store, ids(all)), nil), "order_history")
}

// TestClaimWaitsForABatchThatCheckedItsEpoch holds a replica's batch in the
// window the old fence left open: after the batch checked that it owns
// the partition, before it commits (a trigger on the checkpoint row makes
// the batch wait for a lock the test holds). The replica's lock session
// then ends and a successor takes the partition's lock. The successor's
// claim must wait for the batch, so the batch commits before the
// partition changes hands, and the successor starts after it: every event
// once. Nothing here depends on timing: each step waits for a lock wait
// Postgres reports.
func TestClaimWaitsForABatchThatCheckedItsEpoch(t *testing.T) {
	ctx := context.Background()
	e := newEnv(t)
	f := newFeeder(e.store, 8)
	all := f.scripts("a", 40)
	f.run(t, all...)
	seen := &commits{last: map[int]uint64{}}
	stale := e.start(t, "stale", projections.Config{Projection: readmodel.OrderHistory{}, Observer: seen,
		Heartbeat: time.Hour, ReplicaTTL: 2 * time.Hour})
	e.waitCaughtUp(t, readmodel.NameOrderHistory, f.lastByPartition())

	const p, gate = 5, 4242
	if _, err := e.db.Exec(ctx, `CREATE FUNCTION `+schema+`.hold_stale_advance() RETURNS trigger LANGUAGE plpgsql AS $$
		BEGIN
			IF current_setting('application_name') = 'stale' AND NEW.partition = `+fmt.Sprint(p)+` THEN
				PERFORM pg_advisory_xact_lock_shared(`+fmt.Sprint(gate)+`);
			END IF;
			RETURN NEW;
		END $$;
		CREATE TRIGGER hold_stale_advance BEFORE UPDATE ON `+schema+`.projection_checkpoints
			FOR EACH ROW EXECUTE FUNCTION `+schema+`.hold_stale_advance()`); err != nil {
		t.Fatal(err)
	}
	gateConn, err := e.db.Acquire(ctx)
	if err != nil {
		t.Fatal(err)
	}
	defer gateConn.Release()
	if _, err := gateConn.Exec(ctx, "SELECT pg_advisory_lock($1)", gate); err != nil {
		t.Fatal(err)
	}

	head := f.lastByPartition()[p]
	var more []*script
	for i := 0; len(more) < 10; i++ {
		if id := fmt.Sprintf("b-%d", i); contract.Partition(id, natstest.Partitions) == p {
			more = append(more, newScript(f.rng, id))
		}
	}
	f.run(t, more...)
	all = append(all, more...)
	waiting := func(app, query string) func() (bool, string) {
		return func() (bool, string) {
			var n int
			err := e.db.QueryRow(ctx, `SELECT count(*) FROM pg_stat_activity WHERE datname = current_database()
				AND application_name = $1 AND wait_event_type = 'Lock' AND query LIKE $2`, app, query).Scan(&n)
			return err == nil && n == 1, fmt.Sprint(n, err)
		}
	}
	eventually.Holds(t, 20*time.Second, "the stale batch to wait between its owner check and its commit",
		waiting("stale", "%projection_checkpoints%"))

	var pid int
	if err := e.db.QueryRow(ctx, `SELECT DISTINCT l.pid FROM pg_locks l JOIN pg_stat_activity a USING (pid)
		WHERE l.locktype = 'advisory' AND l.granted AND l.objsubid = 2 AND a.application_name = 'stale'`).Scan(&pid); err != nil {
		t.Fatal(err)
	}
	if _, err := e.db.Exec(ctx, "SELECT pg_terminate_backend($1, 5000)", pid); err != nil {
		t.Fatal(err)
	}
	successor := e.start(t, "successor", projections.Config{Projection: readmodel.OrderHistory{}})
	eventually.Holds(t, 20*time.Second, "the successor's claim to wait for the stale batch",
		waiting("successor", "%projection_owners%"))
	if slices.Contains(successor.Owned(), p) {
		t.Fatalf("the successor owns partition %d while the stale batch may still commit", p)
	}

	if _, err := gateConn.Exec(ctx, "SELECT pg_advisory_unlock($1)", gate); err != nil {
		t.Fatal(err)
	}
	eventually.Holds(t, 20*time.Second, "the successor to claim the partition", func() (bool, string) {
		return slices.Contains(successor.Owned(), p), fmt.Sprint("successor owns ", successor.Owned())
	})
	e.waitCaughtUp(t, readmodel.NameOrderHistory, f.lastByPartition())
	stale.stop(t)
	if seen.reached(p) <= head {
		t.Errorf("the stale batch that had checked its epoch did not commit (partition %d at %d)", p, seen.reached(p))
	}
	compare(t, e.rows(t), fold(t, storedEvents(t, e.store, ids(all)), nil), "order_history")
}

// TestIdleRunnerFollowsAMovedCheckpoint moves an idle partition's
// checkpoint back, as a rebuild swap does when the shadow had not yet seen
// events the live runner projected into the old tables, and removes those
// events' rows. No new event arrives to reveal it: the runner must notice
// the moved checkpoint by itself and project the events again.
func TestIdleRunnerFollowsAMovedCheckpoint(t *testing.T) {
	ctx := context.Background()
	e := newEnv(t)
	f := newFeeder(e.store, 11)
	all := f.scripts("a", 40)
	f.run(t, all...)
	e.start(t, "r", projections.Config{Projection: readmodel.OrderHistory{}})
	e.waitCaughtUp(t, readmodel.NameOrderHistory, f.lastByPartition())

	const p = 2
	var (
		inP  []string
		seqs []uint64
	)
	for id, events := range storedEvents(t, e.store, ids(all)) {
		if contract.Partition(id, natstest.Partitions) != p {
			continue
		}
		inP = append(inP, id)
		for _, ev := range events {
			seqs = append(seqs, ev.Sequence)
		}
	}
	slices.Sort(seqs)
	if len(seqs) < 4 {
		t.Fatalf("partition %d holds %d events; the test needs more", p, len(seqs))
	}
	back := seqs[len(seqs)/2]
	tx, err := e.db.Begin(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := tx.Exec(ctx, `DELETE FROM jetsource.order_history WHERE stream_sequence > $1 AND order_id = ANY($2)`, int64(back), inP); err != nil {
		t.Fatal(err)
	}
	if _, err := tx.Exec(ctx, `UPDATE jetsource.projection_checkpoints SET last_sequence = $1, last_event_id = ''
		WHERE projection = 'order_history' AND partition = $2`, int64(back), p); err != nil {
		t.Fatal(err)
	}
	if err := tx.Commit(ctx); err != nil {
		t.Fatal(err)
	}
	e.waitCaughtUp(t, readmodel.NameOrderHistory, f.lastByPartition())
	compare(t, e.rows(t), fold(t, storedEvents(t, e.store, ids(all)), nil), "order_history")
}
