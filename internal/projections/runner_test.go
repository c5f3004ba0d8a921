package projections_test

import (
	"context"
	"fmt"
	"maps"
	"math/rand/v2"
	"slices"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/jetsource/jetsource/contract"
	"github.com/jetsource/jetsource/internal/eventually"
	"github.com/jetsource/jetsource/internal/natstest"
	"github.com/jetsource/jetsource/internal/projections"
	"github.com/jetsource/jetsource/internal/projections/readmodel"
)

// TestReadModelsMatchTheEvents projects a mixed workload (every event type,
// removals, cancels at every stage, orders created with items in one
// atomic append) with one runner per projection, in small batches, and
// compares every table with a fold of the stored events. It also checks
// the lag report before and after.
func TestReadModelsMatchTheEvents(t *testing.T) {
	e := newEnv(t)
	f := newFeeder(e.store, 1)
	scripts := f.scripts("ord", 300)
	n := f.run(t, scripts...)
	if n < 2000 {
		t.Fatalf("workload has only %d events", n)
	}
	last := f.lastByPartition()

	lag, err := e.admin.Lag(context.Background(), readmodel.NameOrderSummary)
	if err != nil {
		t.Fatal(err)
	}
	var behind uint64
	for _, l := range lag {
		behind += l.EventsBehind
		if l.Cursor != 0 || l.EventsBehind > 0 && l.SecondsBehind <= 0 {
			t.Errorf("lag before projecting: %+v", l)
		}
	}
	if behind != uint64(n) {
		t.Errorf("lag before projecting counts %d events behind; %d were appended", behind, n)
	}

	for _, name := range readmodel.Names() {
		p, err := readmodel.New(name)
		if err != nil {
			t.Fatal(err)
		}
		e.start(t, "replica-"+name, projections.Config{Projection: p, BatchSize: 64})
	}
	for _, name := range readmodel.Names() {
		e.waitCaughtUp(t, name, last)
	}
	want := fold(t, storedEvents(t, e.store, ids(scripts)), nil)
	if len(want.orders) != len(scripts) || len(want.history) != n || len(want.items) == 0 || len(want.sales) == 0 {
		t.Fatalf("expected model has %d orders, %d items, %d events, %d sales rows", len(want.orders), len(want.items), len(want.history), len(want.sales))
	}
	compare(t, e.rows(t), want, allTables...)

	for _, name := range readmodel.Names() {
		lag, err := e.admin.Lag(context.Background(), name)
		if err != nil {
			t.Fatal(err)
		}
		for _, l := range lag {
			if l.EventsBehind != 0 || l.SecondsBehind != 0 || l.Cursor != last[l.Partition] || l.LastEventAt.IsZero() {
				t.Errorf("%s lag after catching up: %+v; want cursor %d and nothing behind", name, l, last[l.Partition])
			}
		}
	}
	stream, err := e.js.Stream(context.Background(), contract.EventsStream)
	if err != nil {
		t.Fatal(err)
	}
	for p := range natstest.Partitions {
		name := projections.ConsumerName(schema, readmodel.NameOrderSummary, p)
		c, err := stream.Consumer(context.Background(), name)
		if err != nil || c.CachedInfo().Config.FilterSubject != contract.EventPartitionFilter(p) {
			t.Errorf("consumer %s: %v", name, err)
		}
	}
	if letters, err := e.admin.DeadLetters(context.Background(), projections.DeadLetterQuery{}); err != nil || len(letters) > 0 {
		t.Errorf("dead letters: %v, %v; want none", letters, err)
	}
}

func ids(scripts []*script) []string {
	out := make([]string, len(scripts))
	for i, s := range scripts {
		out[i] = s.id
	}
	return out
}

// TestRunnerDrainsOnCancel checks that a replica leaves no trace when it
// stops: its partitions are unlocked, its heartbeat row is gone and it
// reports no ownership.
func TestRunnerDrainsOnCancel(t *testing.T) {
	e := newEnv(t)
	r := e.start(t, "solo", projections.Config{Projection: readmodel.OrderSummary{}})
	eventually.Holds(t, 10*time.Second, "the replica to own every partition", func() (bool, string) {
		return len(r.Owned()) == natstest.Partitions && r.Ready(), ""
	})
	r.stop(t)
	if len(r.Owned()) != 0 || r.Ready() {
		t.Errorf("stopped runner owns %v, ready %v", r.Owned(), r.Ready())
	}
	var locks, replicas int
	err := e.db.QueryRow(context.Background(), `SELECT (SELECT count(*) FROM pg_locks WHERE locktype = 'advisory'),
		(SELECT count(*) FROM jetsource.projection_replicas)`).Scan(&locks, &replicas)
	if err != nil || locks != 0 || replicas != 0 {
		t.Errorf("after stopping: %d advisory locks, %d replica rows, %v; want none", locks, replicas, err)
	}
}

// owners maps each partition to the replicas that claim it.
func owners(rs ...*replica) map[int][]string {
	out := map[int][]string{}
	for _, r := range rs {
		for _, p := range r.Owned() {
			out[p] = append(out[p], r.name)
		}
	}
	return out
}

// split waits until the replicas own every partition exactly once, each
// floor or ceil of partitions / replicas of them, and then checks that the
// split holds while every replica runs two more rounds of balancing:
// balancing must not flap.
func (e *env) split(t *testing.T, rs ...*replica) {
	t.Helper()
	lo := natstest.Partitions / len(rs)
	hi := (natstest.Partitions + len(rs) - 1) / len(rs)
	eventually.Holds(t, 20*time.Second, "the partitions to be split", func() (bool, string) {
		o := owners(rs...)
		if len(o) != natstest.Partitions {
			return false, "owners: " + fmtOwners(o)
		}
		for _, names := range o {
			if len(names) != 1 {
				return false, "owners: " + fmtOwners(o)
			}
		}
		for _, r := range rs {
			if n := len(r.Owned()); n < lo || n > hi {
				return false, "owners: " + fmtOwners(o)
			}
		}
		return true, ""
	})
	before := owners(rs...)
	e.rounds(t, 2, rs...)
	if after := owners(rs...); !maps.EqualFunc(before, after, slices.Equal) {
		t.Errorf("the split did not hold:%s\nthen:%s", fmtOwners(before), fmtOwners(after))
	}
}

// rounds waits until each replica has heartbeated n more times: a round
// of a runner is a heartbeat followed by balancing, so after n+1
// heartbeats n rounds of balancing have ended.
func (e *env) rounds(t *testing.T, n int, rs ...*replica) {
	t.Helper()
	beats := func() map[string]time.Time {
		out := map[string]time.Time{}
		rows, err := e.db.Query(context.Background(), `SELECT replica_id, heartbeat_at FROM jetsource.projection_replicas`)
		if err != nil {
			t.Fatal(err)
		}
		var (
			id string
			at time.Time
		)
		if _, err := pgx.ForEachRow(rows, []any{&id, &at}, func() error { out[id] = at; return nil }); err != nil {
			t.Fatal(err)
		}
		return out
	}
	seen := map[string][]time.Time{} // distinct heartbeats since the start
	for id, at := range beats() {
		seen[id] = []time.Time{at}
	}
	eventually.Holds(t, 30*time.Second, fmt.Sprintf("%d more heartbeats of every replica", n+1), func() (bool, string) {
		for id, at := range beats() {
			if l := seen[id]; len(l) == 0 || !l[len(l)-1].Equal(at) {
				seen[id] = append(l, at)
			}
		}
		for _, r := range rs {
			if len(seen[r.name]) < n+2 {
				return false, fmt.Sprintf("%s heartbeated %d times", r.name, len(seen[r.name])-1)
			}
		}
		return true, ""
	})
}

func fmtOwners(o map[int][]string) string {
	out := ""
	for _, p := range slices.Sorted(maps.Keys(o)) {
		out += " " + string(rune('0'+p/10)) + string(rune('0'+p%10)) + "=" + slices.Min(o[p])
		if len(o[p]) > 1 {
			out += "+"
		}
	}
	return out
}

// TestCancelAnytimeLeavesNoGhost cancels a runner 20 times at random
// moments around its heartbeats, every other time while its heartbeat is
// held on a row lock, so that the cancellation lands in the middle of a
// lock-session query (and the lock is sometimes held beyond the query's
// timeout). Each time Run returns, the replica's row in
// projection_replicas must be gone: a row left behind would count as a
// live replica, a ghost, for ReplicaTTL.
func TestCancelAnytimeLeavesNoGhost(t *testing.T) {
	ctx := context.Background()
	e := newEnv(t)
	pool := e.pool(t, "ghost")
	const heartbeat = 50 * time.Millisecond
	rng := rand.New(rand.NewPCG(7, 8))
	for i := range 20 {
		r, err := projections.NewRunner(pool, e.js, projections.Config{Projection: readmodel.OrderHistory{}, Schema: schema,
			ReplicaID: "ghost", Heartbeat: heartbeat, ReplicaTTL: 4 * heartbeat})
		if err != nil {
			t.Fatal(err)
		}
		run, cancel := context.WithCancel(ctx)
		done := make(chan error, 1)
		go func() { done <- r.Run(run) }()
		eventually.Holds(t, 10*time.Second, "the runner to own partitions", func() (bool, string) {
			return r.Ready() && len(r.Owned()) > 0, ""
		})
		var blocker pgx.Tx
		if i%2 == 0 {
			if blocker, err = e.db.Begin(ctx); err != nil {
				t.Fatal(err)
			}
			if _, err := blocker.Exec(ctx, `SELECT 1 FROM jetsource.projection_replicas WHERE replica_id = 'ghost' FOR UPDATE`); err != nil {
				t.Fatal(err)
			}
			eventually.Holds(t, 10*time.Second, "the heartbeat to wait for the row lock", func() (bool, string) {
				var waiting int
				err := e.db.QueryRow(ctx, `SELECT count(*) FROM pg_stat_activity WHERE application_name = 'ghost'
					AND wait_event_type = 'Lock' AND query LIKE '%projection_replicas%'`).Scan(&waiting)
				return err == nil && waiting > 0, fmt.Sprint(err)
			})
		} else {
			// Jitter, not a synchronisation: stop at a random point of
			// the heartbeat cycle.
			time.Sleep(time.Duration(rng.Int64N(int64(2 * heartbeat))))
		}
		cancel()
		if blocker != nil {
			// Jitter: release the row lock at a random point of the drain.
			time.Sleep(time.Duration(rng.Int64N(int64(4 * heartbeat))))
			if err := blocker.Rollback(ctx); err != nil {
				t.Fatal(err)
			}
		}
		select {
		case err := <-done:
			if err != nil {
				t.Fatalf("round %d: Run: %v", i, err)
			}
		case <-time.After(30 * time.Second):
			t.Fatalf("round %d: Run did not return", i)
		}
		var rows int
		if err := e.db.QueryRow(ctx, `SELECT count(*) FROM jetsource.projection_replicas WHERE replica_id = 'ghost'`).Scan(&rows); err != nil {
			t.Fatal(err)
		}
		if rows != 0 {
			t.Fatalf("round %d: the replica's row is still there after Run returned", i)
		}
	}
}
