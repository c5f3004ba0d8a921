package integration

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/jetsource/jetsource/contract"
	"github.com/jetsource/jetsource/internal/eventually"
	"github.com/jetsource/jetsource/internal/pgserver"
	"github.com/jetsource/jetsource/internal/workload"
)

// TestNATSRestartUnderLoad restarts the NATS server (same port, same data)
// while commands stream in: the aggregator and the projectors reconnect and
// resume without operator action, and nothing is lost or doubled.
func TestNATSRestartUnderLoad(t *testing.T) {
	t.Parallel()
	s := newStack(t)
	s.run("aggregator", "aggregator", "AGGREGATOR_REPLICA_ID=agg-0", "AGGREGATOR_LEASE_TTL=2s")
	for _, p := range []string{"order_summary", "order_history", "sales_daily"} {
		s.run(p, "projector", "PROJECTOR_PROJECTION="+p)
	}
	const orders = 120
	cmds := workload.Waves("natsrestart", orders)
	start := time.Now()
	published := make(chan error, 1)
	go func() { published <- s.publish(context.Background(), cmds, 20*time.Millisecond) }()
	// Restart while commands stream in: once the first events are stored.
	s.waitEventsStored(t, 10)
	s.restartNATS(time.Second)
	if err := <-published; err != nil {
		t.Fatal(err)
	}
	results := s.results(cmds, 2*time.Minute)
	faultSummary{kind: "NATS server stopped gracefully and started again on its data",
		injection: "Shutdown of the embedded server, start after 1s", fsync: "one embedded server, R1, default fsync",
		orders: orders, faults: []string{"nats"}, v: s.checkOutcomes(cmds, results), took: time.Since(start)}.finish(t, s)
}

// TestPostgresRestartDuringProjection stops PostgreSQL while projectors
// work and starts it again: they reconnect and resume from their cursors,
// and the read models end exactly as a fresh projection.
func TestPostgresRestartDuringProjection(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	// The server runs as the postgres user, who must be able to reach the
	// data folder.
	base, err := os.MkdirTemp("", "jetsource-pg-restart-")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(base) })
	if err := os.Chmod(base, 0o755); err != nil {
		t.Fatal(err)
	}
	dir := filepath.Join(base, "data")
	pg, err := pgserver.Start(ctx, pgserver.Config{Dir: dir, Install: true})
	if err != nil {
		t.Fatal(err)
	}
	port := pg.Port()
	t.Cleanup(func() { _ = pg.Stop() })
	db, err := pg.CreateDatabase(ctx, "jetsource")
	if err != nil {
		t.Fatal(err)
	}

	s := newStackOn(t, db)
	s.run("aggregator", "aggregator", "AGGREGATOR_REPLICA_ID=agg-0")
	for _, p := range []string{"order_summary", "order_history", "sales_daily"} {
		s.run(p, "projector", "PROJECTOR_PROJECTION="+p, "PROJECTOR_BATCH_SIZE=20")
	}
	const orders = 120
	cmds := workload.Waves("pgrestart", orders)
	start := time.Now()
	published := make(chan error, 1)
	go func() { published <- s.publish(ctx, cmds, 20*time.Millisecond) }()
	// Stop Postgres while the projectors work: once the first events are
	// stored; start it again once more came in while it was down, so the
	// projectors have events to catch up on.
	s.waitEventsStored(t, 10)
	if err := pg.Stop(); err != nil {
		t.Fatal(err)
	}
	s.waitEventsStored(t, s.eventsStored(t)+30)
	if pg, err = pgserver.Start(ctx, pgserver.Config{Dir: dir, Port: port}); err != nil {
		t.Fatal(err)
	}
	if err := <-published; err != nil {
		t.Fatal(err)
	}
	results := s.results(cmds, 2*time.Minute)
	faultSummary{kind: "PostgreSQL stopped gracefully and started again on its data",
		injection: "pg_ctl stop -m fast, start once 30 more events are stored", fsync: "PostgreSQL fsync off, synchronous_commit off",
		orders: orders, faults: []string{"postgres"}, v: s.checkOutcomes(cmds, results), took: time.Since(start)}.finish(t, s)
}

// eventsStored is the number of events in the event store.
func (s *stack) eventsStored(t *testing.T) uint64 {
	t.Helper()
	stream, err := s.js.Stream(context.Background(), contract.EventsStream)
	if err != nil {
		t.Fatal(err)
	}
	return stream.CachedInfo().State.Msgs
}

// waitEventsStored waits until the event store holds at least n events.
func (s *stack) waitEventsStored(t *testing.T, n uint64) {
	t.Helper()
	eventually.Holds(t, time.Minute, fmt.Sprintf("%d events stored", n), func() (bool, string) {
		got := s.eventsStored(t)
		return got >= n, fmt.Sprintf("%d stored", got)
	})
}
