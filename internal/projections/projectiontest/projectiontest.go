// Package projectiontest is the conformance suite every read model
// passes, in the manner of watermill's pubsub/tests: what the projection
// runner relies on, checked against real NATS and Postgres. A read model's
// test runs it in a few lines:
//
//	func TestConformance(t *testing.T) {
//		projectiontest.Run(t, projectiontest.Suite{Projection: MyModel{}, Events: history, Database: cluster.DB})
//	}
//
// The suite checks that
//   - a batch equals its events applied one by one (the runner cuts
//     batches anywhere, and re-applies a failed batch event by event);
//   - a rebuild reproduces the tables the live runner built;
//   - events at or below what the tables already hold change nothing:
//     applied again, each either fails (and is rolled back) or changes no
//     row;
//   - an event of an unknown type or of a newer schema version fails, so
//     that the runner dead-letters it instead of dropping it silently.
package projectiontest

import (
	"context"
	"fmt"
	"maps"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/jetsource/jetsource/contract"
	"github.com/jetsource/jetsource/internal/es"
	"github.com/jetsource/jetsource/internal/eventually"
	"github.com/jetsource/jetsource/internal/natstest"
	"github.com/jetsource/jetsource/internal/projections"
	"github.com/jetsource/jetsource/internal/projections/migrations"
)

// Suite is what the conformance tests need of a read model.
type Suite struct {
	// Projection is the read model under test.
	Projection projections.Projection
	// Events is a history the projection accepts: several orders' events,
	// each order's versions from 1 without gaps, in the order they are
	// appended. Their Sequence is ignored: the suite numbers them as the
	// event stream would.
	Events []contract.Event
	// Database returns the URL of an empty database of the test's own.
	Database func(testing.TB) string
}

// Run runs the conformance tests as subtests of t.
func Run(t *testing.T, s Suite) {
	if len(s.Events) == 0 {
		t.Fatal("projectiontest: the suite needs events")
	}
	t.Run("BatchEqualsOneByOne", s.batchEqualsOneByOne)
	t.Run("RebuildReproducesTheTables", s.rebuildReproducesTheTables)
	t.Run("EventsAlreadyAppliedChangeNothing", s.eventsAlreadyAppliedChangeNothing)
	t.Run("UnknownTypeOrVersionFails", s.unknownTypeOrVersionFails)
}

// batchEqualsOneByOne applies each partition's events in one batch into
// one schema, and one event per transaction into another.
func (s Suite) batchEqualsOneByOne(t *testing.T) {
	db := s.open(t, "batch", "single")
	events := numbered(s.Events)
	for _, batch := range byPartition(events) {
		if err := apply(t, db, "batch", s.Projection, batch); err != nil {
			t.Fatalf("a batch of %d events: %v", len(batch), err)
		}
	}
	applyOneByOne(t, db, "single", s.Projection, events)
	compare(t, "one by one", s.dump(t, db, "single"), "in batches", s.dump(t, db, "batch"))
}

// rebuildReproducesTheTables runs the projection as the runner does, then
// rebuilds it while the runner runs.
func (s Suite) rebuildReproducesTheTables(t *testing.T) {
	const schema = projections.DefaultSchema
	db := s.open(t, schema)
	_, _, js := natstest.Streams(t, natstest.Partitions)
	heads := appendAll(t, es.NewStore(js, natstest.Partitions), s.Events)
	admin, err := projections.NewAdmin(db, js, projections.AdminConfig{Schema: schema, Partitions: natstest.Partitions})
	if err != nil {
		t.Fatal(err)
	}
	runner, err := projections.NewRunner(db, js, projections.Config{Projection: s.Projection, Schema: schema, Partitions: natstest.Partitions,
		Heartbeat: 100 * time.Millisecond, ReplicaTTL: time.Second})
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- runner.Run(ctx) }()
	t.Cleanup(func() {
		cancel()
		if err := <-done; err != nil {
			t.Errorf("runner: %v", err)
		}
	})
	waitCaughtUp(t, admin, s.Projection.Name(), heads)
	live := s.dump(t, db, schema)

	pr, err := admin.Rebuild(context.Background(), s.Projection, projections.RebuildOptions{ProgressEvery: 10 * time.Millisecond})
	if err != nil || !pr.Swapped {
		t.Fatalf("rebuild: %+v, %v", pr, err)
	}
	waitCaughtUp(t, admin, s.Projection.Name(), heads)
	compare(t, "the live runner's", live, "the rebuild's", s.dump(t, db, schema))
}

// eventsAlreadyAppliedChangeNothing applies every event once, then each
// again in a transaction of its own, committed only if Apply accepts it.
func (s Suite) eventsAlreadyAppliedChangeNothing(t *testing.T) {
	db := s.open(t, "once")
	events := numbered(s.Events)
	applyOneByOne(t, db, "once", s.Projection, events)
	want := s.dump(t, db, "once")
	for _, e := range events {
		_ = apply(t, db, "once", s.Projection, []contract.Event{e}) // an error rolls it back, as the runner would
	}
	compare(t, "applied once", want, "applied again", s.dump(t, db, "once"))
}

// unknownTypeOrVersionFails gives the projection, after the history, the
// next event of an order with a type the contract does not know, and one
// with a schema version newer than this build reads.
func (s Suite) unknownTypeOrVersionFails(t *testing.T) {
	db := s.open(t, "strict")
	events := numbered(s.Events)
	applyOneByOne(t, db, "strict", s.Projection, events)
	last := events[len(events)-1]
	for _, e := range events {
		if e.AggregateID == last.AggregateID {
			last = e // the order's newest event
		}
	}
	next := last
	next.ID, next.Version, next.Sequence = last.ID+"-next", last.Version+1, last.Sequence+1
	unknownType, newerVersion := next, next
	unknownType.Type = "OrderTeleported"
	newerVersion.SchemaVersion = contract.SchemaVersion(next.Type) + 1
	want := s.dump(t, db, "strict")
	for name, e := range map[string]contract.Event{"an unknown event type": unknownType, "a newer schema version": newerVersion} {
		if err := apply(t, db, "strict", s.Projection, []contract.Event{e}); err == nil {
			t.Errorf("%s (%s version %d) was accepted; it must fail so that the runner dead-letters it", name, e.Type, e.SchemaVersion)
		}
	}
	compare(t, "before", want, "after the failures", s.dump(t, db, "strict"))
}

// open returns a pool on a fresh database with the schemas migrated.
func (s Suite) open(t *testing.T, schemas ...string) *pgxpool.Pool {
	t.Helper()
	db, err := pgxpool.New(context.Background(), s.Database(t))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(db.Close)
	for _, schema := range schemas {
		if _, err := migrations.Apply(context.Background(), db, schema); err != nil {
			t.Fatal(err)
		}
	}
	return db
}

// numbered copies events with the sequences the event stream would give
// them.
func numbered(events []contract.Event) []contract.Event {
	out := slices.Clone(events)
	for i := range out {
		out[i].Sequence = uint64(i + 1)
	}
	return out
}

// byPartition splits events into each partition's, in stream order.
func byPartition(events []contract.Event) [][]contract.Event {
	parts := map[int][]contract.Event{}
	for _, e := range events {
		p := contract.Partition(e.AggregateID, natstest.Partitions)
		parts[p] = append(parts[p], e)
	}
	out := make([][]contract.Event, 0, len(parts))
	for _, p := range slices.Sorted(maps.Keys(parts)) {
		out = append(out, parts[p])
	}
	return out
}

// apply applies events in one transaction in schema, as the runner does,
// and commits only if the projection accepts them.
func apply(t *testing.T, db *pgxpool.Pool, schema string, p projections.Projection, events []contract.Event) error {
	t.Helper()
	ctx := context.Background()
	tx, err := db.Begin(ctx)
	if err != nil {
		t.Fatal(err)
	}
	defer func() { _ = tx.Rollback(ctx) }()
	if _, err := tx.Exec(ctx, "SET LOCAL search_path TO "+pgx.Identifier{schema}.Sanitize()); err != nil {
		t.Fatal(err)
	}
	if err := p.Apply(ctx, tx, events); err != nil {
		return err
	}
	if err := tx.Commit(ctx); err != nil {
		t.Fatal(err)
	}
	return nil
}

func applyOneByOne(t *testing.T, db *pgxpool.Pool, schema string, p projections.Projection, events []contract.Event) {
	t.Helper()
	for _, e := range events {
		if err := apply(t, db, schema, p, []contract.Event{e}); err != nil {
			t.Fatalf("event %s (%s of %s, version %d): %v", e.ID, e.Type, e.AggregateID, e.Version, err)
		}
	}
}

// appendAll appends events to the store, each order's after its last, and
// returns the newest stream sequence of each partition.
func appendAll(t *testing.T, store *es.Store, events []contract.Event) map[int]uint64 {
	t.Helper()
	last := map[string]uint64{}
	heads := map[int]uint64{}
	for _, e := range events {
		seq, err := store.Append(context.Background(), e.AggregateID, last[e.AggregateID], []contract.Event{e})
		if err != nil {
			t.Fatalf("append %s: %v", e.ID, err)
		}
		last[e.AggregateID] = seq
		heads[contract.Partition(e.AggregateID, natstest.Partitions)] = seq
	}
	return heads
}

// waitCaughtUp waits until every partition's cursor reaches its head.
func waitCaughtUp(t *testing.T, admin *projections.Admin, projection string, heads map[int]uint64) {
	t.Helper()
	eventually.Holds(t, time.Minute, projection+" to catch up", func() (bool, string) {
		cps, err := admin.Checkpoints(context.Background(), projection)
		if err != nil {
			return false, err.Error()
		}
		for p, head := range heads {
			if cps[p].LastSequence < head {
				return false, fmt.Sprintf("partition %d at %d of %d", p, cps[p].LastSequence, head)
			}
		}
		return true, ""
	})
}

// dump is every row of the projection's tables in schema, one JSON text
// per row, sorted: two schemas hold the same rows when their dumps match.
func (s Suite) dump(t *testing.T, db *pgxpool.Pool, schema string) map[string][]string {
	t.Helper()
	out := map[string][]string{}
	for _, table := range s.Projection.Tables() {
		rows, err := db.Query(context.Background(), "SELECT to_jsonb(r)::text FROM "+pgx.Identifier{schema, table}.Sanitize()+" r ORDER BY 1")
		if err != nil {
			t.Fatal(err)
		}
		lines, err := pgx.CollectRows(rows, pgx.RowTo[string])
		if err != nil {
			t.Fatal(err)
		}
		out[table] = lines
	}
	return out
}

// compare fails the test with the rows that differ, table by table.
func compare(t *testing.T, wantName string, want map[string][]string, gotName string, got map[string][]string) {
	t.Helper()
	for table, rows := range want {
		var missing, extra []string
		for _, r := range rows {
			if !slices.Contains(got[table], r) {
				missing = append(missing, r)
			}
		}
		for _, r := range got[table] {
			if !slices.Contains(rows, r) {
				extra = append(extra, r)
			}
		}
		if len(missing)+len(extra) > 0 || len(rows) != len(got[table]) {
			t.Errorf("table %s: %d rows %s, %d %s\nonly %s:\n  %s\nonly %s:\n  %s", table, len(rows), wantName, len(got[table]), gotName,
				wantName, strings.Join(head(missing), "\n  "), gotName, strings.Join(head(extra), "\n  "))
		}
	}
}

// head is the first few rows, enough to see what differs.
func head(rows []string) []string { return rows[:min(len(rows), 5)] }
