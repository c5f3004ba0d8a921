package integration

import (
	"context"
	"fmt"
	"math/rand/v2"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/jetsource/jetsource/internal/eventually"
	"github.com/jetsource/jetsource/internal/pgserver"
	"github.com/jetsource/jetsource/internal/projections"
	"github.com/jetsource/jetsource/internal/projections/readmodel"
	"github.com/jetsource/jetsource/internal/workload"
)

// crashablePostgres is a PostgreSQL server of the test's own that it
// crashes with SIGKILL and starts again on the same data and port.
type crashablePostgres struct {
	t   *testing.T
	dir string
	pg  *pgserver.Server
}

func startCrashablePostgres(t *testing.T) *crashablePostgres {
	t.Helper()
	// The server runs as the postgres user, who must be able to reach the
	// data folder.
	base, err := os.MkdirTemp("", "jetsource-pg-crash-")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(base) })
	if err := os.Chmod(base, 0o755); err != nil {
		t.Fatal(err)
	}
	c := &crashablePostgres{t: t, dir: filepath.Join(base, "data")}
	c.pg, err = pgserver.Start(context.Background(), pgserver.Config{Dir: c.dir, Install: true})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = c.pg.Stop() })
	return c
}

// crash kills the server with SIGKILL and starts it again on its data,
// which runs PostgreSQL's crash recovery.
func (c *crashablePostgres) crash(pause time.Duration) {
	c.t.Helper()
	if err := c.pg.Kill(); err != nil {
		c.t.Fatal(err)
	}
	time.Sleep(pause) // the outage, part of the fault schedule
	pg, err := pgserver.Start(context.Background(), pgserver.Config{Dir: c.dir, Port: c.pg.Port()})
	if err != nil {
		c.t.Fatal(err)
	}
	c.pg = pg
}

// TestPostgresKilledDuringProjection crashes PostgreSQL (SIGKILL of the
// postmaster and its processes) again and again while projectors work.
// The test server commits asynchronously (synchronous_commit off), so a
// crash loses the last commits although the projector acknowledged their
// events: the projectors must find their cursors moved back and project
// those events again, and the read models end exactly as a fresh
// projection.
func TestPostgresKilledDuringProjection(t *testing.T) {
	t.Parallel()
	cfg := chaosFromEnv(t, "JETSOURCE_CHAOS_PG", 120, 3)
	rng := rand.New(rand.NewPCG(cfg.seed, 3))
	pg := startCrashablePostgres(t)
	db, err := pg.pg.CreateDatabase(context.Background(), "jetsource")
	if err != nil {
		t.Fatal(err)
	}
	s := newStackOn(t, db)
	s.run("aggregator", "aggregator", "AGGREGATOR_REPLICA_ID=agg-0")
	s.run("summary-0", "projector", "PROJECTOR_PROJECTION=order_summary", "PROJECTOR_BATCH_SIZE=20")
	s.run("summary-1", "projector", "PROJECTOR_PROJECTION=order_summary", "PROJECTOR_BATCH_SIZE=20")
	s.run("history", "projector", "PROJECTOR_PROJECTION=order_history", "PROJECTOR_BATCH_SIZE=20")
	s.run("sales", "projector", "PROJECTOR_PROJECTION=sales_daily", "PROJECTOR_BATCH_SIZE=20")

	cmds := workload.Waves(fmt.Sprintf("pgkill%d", cfg.seed%100000), cfg.orders)
	start := time.Now()
	var faults []string
	setBack := 0
	for k, part := range chunk(cmds, cfg.kills+1) {
		published := make(chan error, 1)
		go func() { published <- s.publish(context.Background(), part, 20*time.Millisecond) }()
		if k < cfg.kills {
			time.Sleep(time.Duration(100+rng.IntN(700)) * time.Millisecond) // the kill schedule
			before := cursors(t, db)
			pg.crash(time.Duration(rng.IntN(1000)) * time.Millisecond)
			for key, after := range cursors(t, db) {
				if after < before[key] {
					setBack++
				}
			}
			faults = append(faults, "postmaster")
		}
		if err := <-published; err != nil {
			t.Fatal(err)
		}
	}
	results := s.results(cmds, 2*time.Minute)
	faultSummary{
		kind:      "PostgreSQL killed during projection",
		injection: "SIGKILL of the postmaster and its processes",
		fsync:     "PostgreSQL fsync off, synchronous_commit off (a crash loses the last commits)",
		seed:      cfg.seed, orders: cfg.orders, faults: faults, v: s.checkOutcomes(cmds, results), took: time.Since(start),
		extra: fmt.Sprintf("cursors the crashes set back (commits lost after their events were acknowledged, projected again): %d", setBack),
	}.finish(t, s)
}

// TestPostgresKilledDuringRebuild crashes PostgreSQL while `orderctl
// rebuild` builds the shadow tables and commands flow: the rebuild fails
// and says so, the live tables keep serving, the live projectors recover,
// and the rebuild run again swaps in tables equal to a fresh projection.
func TestPostgresKilledDuringRebuild(t *testing.T) {
	t.Parallel()
	cfg := chaosFromEnv(t, "JETSOURCE_CHAOS_PG_REBUILD", 120, 1)
	rng := rand.New(rand.NewPCG(cfg.seed, 4))
	pg := startCrashablePostgres(t)
	db, err := pg.pg.CreateDatabase(context.Background(), "jetsource")
	if err != nil {
		t.Fatal(err)
	}
	s := newStackOn(t, db)
	s.run("aggregator", "aggregator", "AGGREGATOR_REPLICA_ID=agg-0")
	for _, p := range []string{"order_summary", "order_history", "sales_daily"} {
		s.run(p, "projector", "PROJECTOR_PROJECTION="+p, "PROJECTOR_BATCH_SIZE=20")
	}
	cmds := workload.Waves(fmt.Sprintf("pgrebuild%d", cfg.seed%100000), cfg.orders)
	chunks := chunk(cmds, cfg.kills+1)
	if err := s.publish(context.Background(), chunks[0], 0); err != nil {
		t.Fatal(err)
	}
	// A rebuild copies the live tables' definitions: wait until the
	// projectors have migrated the schema and projected the first commands.
	s.results(chunks[0], time.Minute)
	pool, err := pgxpool.New(context.Background(), db)
	if err != nil {
		t.Fatal(err)
	}
	s.caughtUp(pool, projections.DefaultSchema, readmodel.Names(), time.Minute)
	pool.Close()
	start := time.Now()
	var faults []string
	orderctl := func(args ...string) *process {
		return startWith(t, "orderctl", args, "NATS_URL="+s.natsURL, "DATABASE_URL="+s.db)
	}
	swapped := func(rebuild *process) {
		t.Helper()
		if code := rebuild.cmd.ProcessState.ExitCode(); code != 0 || !strings.Contains(rebuild.out.String(), "the new tables are live") {
			t.Fatalf("orderctl rebuild: exit %d\n%s", code, rebuild.out.String())
		}
	}
	for k := range cfg.kills {
		published := make(chan error, 1)
		go func() { published <- s.publish(context.Background(), chunks[k+1], 20*time.Millisecond) }()
		// Kill while the rebuild projects into its shadow tables; a rebuild
		// that swapped before the kill landed does not count, and the next
		// try goes on.
		for {
			rebuild := orderctl("rebuild", "--projection", "order_summary")
			eventually.True(t, time.Minute, "the rebuild to project into its shadow", func() bool {
				return rebuild.exited() || shadowOrders(t, s.db) > 0
			})
			if rebuild.exited() {
				swapped(rebuild)
				t.Log("the rebuild swapped before the kill; trying again")
				continue
			}
			time.Sleep(time.Duration(rng.IntN(300)) * time.Millisecond) // the kill schedule: a random point of the rebuild
			pg.crash(time.Duration(rng.IntN(1000)) * time.Millisecond)
			<-rebuild.done
			if code := rebuild.cmd.ProcessState.ExitCode(); code != 0 {
				if out := rebuild.out.String(); code != 1 || !strings.Contains(out, "rebuild order_summary") {
					t.Fatalf("the rebuild the crash ended: exit %d, and it does not say what failed:\n%s", code, out)
				}
				faults = append(faults, "postmaster during rebuild")
				break
			}
			swapped(rebuild)
			t.Log("the rebuild swapped before the kill landed; trying again")
		}
		if err := <-published; err != nil {
			t.Fatal(err)
		}
	}
	rebuild := orderctl("rebuild", "--projection", "order_summary")
	<-rebuild.done
	swapped(rebuild)
	results := s.results(cmds, 2*time.Minute)
	faultSummary{kind: "PostgreSQL killed during a rebuild", injection: "SIGKILL of the postmaster and its processes",
		fsync: "PostgreSQL fsync off, synchronous_commit off (a crash loses the last commits)",
		seed:  cfg.seed, orders: cfg.orders, faults: faults, v: s.checkOutcomes(cmds, results), took: time.Since(start),
		extra: "the rebuild run again after the crash swapped in"}.finish(t, s)
}

// shadowOrders counts the rows of the order_summary rebuild's shadow
// orders table; 0 while there is none.
func shadowOrders(t *testing.T, db string) int {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	conn, err := pgx.Connect(ctx, db)
	if err != nil {
		return 0 // a crashed server is coming back
	}
	defer conn.Close(ctx)
	var n int
	if err := conn.QueryRow(ctx, `SELECT count(*) FROM jetsource_rebuild_order_summary.orders`).Scan(&n); err != nil {
		return 0
	}
	return n
}

// chunk splits cmds into n consecutive parts of about equal size.
func chunk(cmds []workload.Command, n int) [][]workload.Command {
	size := len(cmds)/n + 1
	out := make([][]workload.Command, 0, n)
	for i := range n {
		out = append(out, cmds[min(i*size, len(cmds)):min((i+1)*size, len(cmds))])
	}
	return out
}

// cursors reads every projection's cursor per partition.
func cursors(t *testing.T, db string) map[string]uint64 {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	out := map[string]uint64{}
	retry(t, 30*time.Second, "read the cursors", func() error {
		conn, err := pgx.Connect(ctx, db)
		if err != nil {
			return err
		}
		defer conn.Close(ctx)
		rows, err := conn.Query(ctx, `SELECT projection || '/' || partition, last_sequence FROM jetsource.projection_checkpoints`)
		if err != nil {
			return err
		}
		var (
			key string
			seq int64
		)
		_, err = pgx.ForEachRow(rows, []any{&key, &seq}, func() error { out[key] = uint64(seq); return nil })
		return err
	})
	return out
}
