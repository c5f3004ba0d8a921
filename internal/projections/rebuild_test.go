package projections_test

import (
	"context"
	"errors"
	"fmt"
	"math"
	"slices"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/jetsource/jetsource/contract"
	"github.com/jetsource/jetsource/internal/eventually"
	"github.com/jetsource/jetsource/internal/natstest"
	"github.com/jetsource/jetsource/internal/projections"
	"github.com/jetsource/jetsource/internal/projections/readmodel"
)

// TestRebuildSwapsInIdenticalTables rebuilds order_summary while its live
// runner is up and a reader queries the live tables: the reader never sees
// an error or a change, and the swapped-in tables equal the old ones row
// for row (EXCEPT ALL both ways), with the same index names. The live
// runner then continues from the swapped cursors. A second rebuild, of
// sales_daily, runs while events are appended, and the counts come out
// exact: no event counted twice or missed across the swap.
func TestRebuildSwapsInIdenticalTables(t *testing.T) {
	ctx := context.Background()
	e := newEnv(t)
	f := newFeeder(e.store, 5)
	all := f.scripts("a", 200)
	n := f.run(t, all...)
	e.start(t, "live-order_summary", projections.Config{Projection: readmodel.OrderSummary{}})
	live := e.start(t, "live-sales_daily", projections.Config{Projection: readmodel.SalesDaily{}})
	for _, name := range []string{readmodel.NameOrderSummary, readmodel.NameSalesDaily} {
		e.waitCaughtUp(t, name, f.lastByPartition())
	}
	for _, sql := range []string{
		"CREATE SCHEMA before",
		"CREATE TABLE before.orders AS SELECT * FROM jetsource.orders",
		"CREATE TABLE before.order_items AS SELECT * FROM jetsource.order_items",
	} {
		if _, err := e.db.Exec(ctx, sql); err != nil {
			t.Fatal(err)
		}
	}
	indexesBefore := indexNames(t, e)

	// A reader keeps querying the live tables during the rebuild.
	var (
		stop             = make(chan struct{})
		readerDone       sync.WaitGroup
		reads, surprises atomic.Int64
		count, total     int64
	)
	if err := e.db.QueryRow(ctx, "SELECT count(*), sum(total_cents) FROM jetsource.orders").Scan(&count, &total); err != nil {
		t.Fatal(err)
	}
	readerDone.Go(func() {
		for {
			select {
			case <-stop:
				return
			default:
			}
			var c, s int64
			err := e.db.QueryRow(ctx, "SELECT count(*), sum(total_cents) FROM jetsource.orders").Scan(&c, &s)
			reads.Add(1)
			if err != nil || c != count || s != total {
				surprises.Add(1)
			}
		}
	})

	var reports []projections.RebuildProgress
	pr, err := e.admin.Rebuild(ctx, readmodel.OrderSummary{}, projections.RebuildOptions{
		BatchSize:     100,
		ProgressEvery: 10 * time.Millisecond,
		Progress:      func(p projections.RebuildProgress) { reports = append(reports, p) },
	})
	close(stop)
	readerDone.Wait()
	if err != nil {
		t.Fatal(err)
	}
	if reads.Load() < 10 || surprises.Load() != 0 {
		t.Errorf("the reader made %d queries, %d failed or saw other rows; want many, none", reads.Load(), surprises.Load())
	}
	if !pr.Swapped || pr.Done != uint64(n) || pr.Total != uint64(n) || pr.Rate <= 0 {
		t.Errorf("final progress %+v; want swapped, %d of %d events", pr, n, n)
	}
	if len(reports) < 2 || !slices.IsSortedFunc(reports, func(a, b projections.RebuildProgress) int { return int(a.Done) - int(b.Done) }) ||
		!reports[len(reports)-1].Swapped {
		t.Errorf("progress reports %+v; want several, growing, the last after the swap", reports)
	}
	for _, table := range []string{"orders", "order_items"} {
		var differ int
		if err := e.db.QueryRow(ctx, `SELECT count(*) FROM (
			(SELECT * FROM jetsource.`+table+` EXCEPT ALL SELECT * FROM before.`+table+`)
			UNION ALL
			(SELECT * FROM before.`+table+` EXCEPT ALL SELECT * FROM jetsource.`+table+`)) d`).Scan(&differ); err != nil {
			t.Fatal(err)
		}
		if differ != 0 {
			t.Errorf("%s: %d rows differ between the rebuilt and the old table", table, differ)
		}
	}
	if got := indexNames(t, e); !slices.Equal(got, indexesBefore) {
		t.Errorf("indexes after the swap %v; before %v", got, indexesBefore)
	}
	var leftovers int
	if err := e.db.QueryRow(ctx, `SELECT count(*) FROM pg_namespace WHERE nspname LIKE 'jetsource\_%'`).Scan(&leftovers); err != nil || leftovers != 0 {
		t.Errorf("%d shadow or retired schemas are left, %v", leftovers, err)
	}
	stream, err := e.js.Stream(ctx, contract.EventsStream)
	if err != nil {
		t.Fatal(err)
	}
	for p := range natstest.Partitions {
		if _, err := stream.Consumer(ctx, fmt.Sprintf("rebuild_jetsource_order_summary_%d", p)); !errors.Is(err, jetstream.ErrConsumerNotFound) {
			t.Errorf("rebuild consumer of partition %d: %v; want it deleted", p, err)
		}
	}

	// The live runner continues from the swapped cursors.
	more := f.scripts("b", 60)
	f.run(t, more...)
	all = append(all, more...)
	e.waitCaughtUp(t, readmodel.NameOrderSummary, f.lastByPartition())
	compare(t, e.rows(t), fold(t, storedEvents(t, e.store, ids(all)), nil), "orders", "order_items")

	// sales_daily adds to its rows, so an event projected twice, or lost,
	// across the swap would show in the sums. The live runner is held in a
	// batch when the rebuild swaps, after only a part of the events reached
	// the shadow: the swap waits for that batch, and the runner then finds
	// its checkpoint moved back and projects the rest into the new tables.
	live.stop(t)
	var (
		armed   atomic.Bool
		held    = make(chan struct{}, 1)
		release = make(chan struct{})
		rewound atomic.Int32
	)
	hold := hook{Projection: readmodel.SalesDaily{}, before: func(context.Context, []contract.Event) error {
		if armed.CompareAndSwap(true, false) {
			held <- struct{}{}
			<-release
		}
		return nil
	}}
	watch := &cursorWatch{rewound: &rewound, last: map[int]uint64{}}
	e.start(t, "live-sales-2", projections.Config{Projection: hold, Observer: watch})
	armed.Store(true)
	during := f.scripts("c", 60)
	f.run(t, during...)
	all = append(all, during...)
	<-held
	type result struct {
		pr  projections.RebuildProgress
		err error
	}
	rebuilt := make(chan result, 1)
	// A slow shadow is still far behind when all its workers have started
	// and the rebuild swaps, even where starting them takes long (-race).
	slow := hook{Projection: readmodel.SalesDaily{}, before: func(context.Context, []contract.Event) error {
		time.Sleep(200 * time.Millisecond) // paces the shadow's batches: a slow projection, not a synchronisation
		return nil
	}}
	go func() {
		pr, err := e.admin.Rebuild(ctx, slow, projections.RebuildOptions{
			BatchSize: 20, ProgressEvery: 10 * time.Millisecond, SwapWithin: math.MaxUint64})
		rebuilt <- result{pr, err}
	}()
	eventually.Holds(t, 20*time.Second, "the swap to wait for the held batch", func() (bool, string) {
		var waiting int
		err := e.db.QueryRow(ctx, `SELECT count(*) FROM pg_stat_activity WHERE datname = current_database()
			AND wait_event_type = 'Lock' AND query LIKE '%projection_checkpoints%FOR UPDATE%'`).Scan(&waiting)
		return err == nil && waiting > 0, fmt.Sprint(err)
	})
	close(release)
	if r := <-rebuilt; r.err != nil || !r.pr.Swapped {
		t.Fatalf("rebuild of sales_daily: %+v, %v", r.pr, r.err)
	}
	after := f.scripts("d", 40)
	f.run(t, after...)
	all = append(all, after...)
	e.waitCaughtUp(t, readmodel.NameSalesDaily, f.lastByPartition())
	compare(t, e.rows(t), fold(t, storedEvents(t, e.store, ids(all)), nil), "sales_daily")
	if rewound.Load() == 0 {
		t.Error("no partition of the live runner continued from a swapped checkpoint")
	}
}

// cursorWatch counts batches that start below the previous batch's end:
// partitions that continued from a checkpoint a swap moved back.
type cursorWatch struct {
	mu      sync.Mutex
	last    map[int]uint64
	rewound *atomic.Int32
}

func (w *cursorWatch) BatchCommitted(s projections.BatchStats) {
	w.mu.Lock()
	defer w.mu.Unlock()
	if s.From < w.last[s.Partition] {
		w.rewound.Add(1)
	}
	w.last[s.Partition] = s.Cursor
}

func (w *cursorWatch) OwnershipChanged(string, []int) {}

func indexNames(t *testing.T, e *env) []string {
	t.Helper()
	rows, err := e.db.Query(context.Background(), `SELECT tablename || '.' || indexname FROM pg_indexes
		WHERE schemaname = 'jetsource' AND tablename IN ('orders', 'order_items') ORDER BY 1`)
	if err != nil {
		t.Fatal(err)
	}
	names, err := pgx.CollectRows(rows, pgx.RowTo[string])
	if err != nil {
		t.Fatal(err)
	}
	return names
}

// TestOneRebuildAtATime refuses a second rebuild of the same projection.
func TestOneRebuildAtATime(t *testing.T) {
	ctx := context.Background()
	e := newEnv(t)
	f := newFeeder(e.store, 9)
	f.run(t, f.scripts("a", 30)...)
	held := make(chan struct{})
	release := make(chan struct{})
	var once sync.Once
	slow := hook{Projection: readmodel.OrderHistory{}, before: func(context.Context, []contract.Event) error {
		once.Do(func() { close(held) })
		<-release
		return nil
	}}
	first := make(chan error, 1)
	go func() {
		_, err := e.admin.Rebuild(ctx, slow, projections.RebuildOptions{})
		first <- err
	}()
	select {
	case <-held:
	case err := <-first:
		t.Fatalf("first rebuild ended early: %v", err)
	}
	if _, err := e.admin.Rebuild(ctx, readmodel.OrderHistory{}, projections.RebuildOptions{}); !errors.Is(err, projections.ErrRebuildRunning) {
		t.Errorf("second rebuild: %v; want ErrRebuildRunning", err)
	}
	close(release)
	if err := <-first; err != nil {
		t.Fatal(err)
	}
}

// TestRebuildSwapsUnderSteadyWrites rebuilds order_summary while events
// keep arriving, about a thousand a second, and the live runner projects
// them: the shadow is never idle, yet the rebuild must swap within a few
// seconds, and once the writes stop the tables must equal a fold of the
// stored events.
func TestRebuildSwapsUnderSteadyWrites(t *testing.T) {
	e := newEnv(t)
	f := newFeeder(e.store, 11)
	all := f.scripts("a", 200)
	f.run(t, all...)
	e.start(t, "live", projections.Config{Projection: readmodel.OrderSummary{}})
	e.waitCaughtUp(t, readmodel.NameOrderSummary, f.lastByPartition())

	steady := f.scripts("w", 3000)
	stop := make(chan struct{})
	type fed struct {
		events int
		err    error
	}
	const bound = 20 * time.Second
	ctx, cancel := context.WithTimeout(context.Background(), bound)
	defer cancel()
	stream, err := e.js.Stream(ctx, contract.EventsStream)
	if err != nil {
		t.Fatal(err)
	}
	stored := func() uint64 {
		info, err := stream.Info(context.Background())
		if err != nil {
			t.Fatal(err)
		}
		return info.State.Msgs
	}
	writer := make(chan fed, 1)
	writing := time.Now()
	go func() {
		n, err := f.feed(stop, 500*time.Microsecond, steady...)
		writer <- fed{n, err}
	}()
	// The writes are in full swing once a few hundred events came in.
	initial := stored()
	eventually.True(t, bound, "200 events written", func() bool { return stored() >= initial+200 })

	before := stored()
	began := time.Now()
	pr, err := e.admin.Rebuild(ctx, readmodel.OrderSummary{}, projections.RebuildOptions{ProgressEvery: 100 * time.Millisecond})
	took := time.Since(began)
	after := stored()
	// Writes go on after the swap too, unless the writer ran out of orders.
	eventually.True(t, bound, "100 events written after the rebuild", func() bool { return stored() >= after+100 || len(writer) > 0 })
	close(stop)
	w := <-writer
	if w.err != nil {
		t.Fatal(w.err)
	}
	rate := float64(w.events) / time.Since(writing).Seconds()
	t.Logf("rebuild took %s under %.0f appended events/s: %+v", took, rate, pr)
	if err != nil || !pr.Swapped {
		t.Fatalf("rebuild under steady writes: %+v, %v; want swapped within %s", pr, err, bound)
	}
	if pr.Done < before {
		t.Errorf("the shadow swapped in after %d events; %d were stored before the rebuild began", pr.Done, before)
	}
	if after <= before {
		t.Errorf("no event was appended while the rebuild ran (%d before, %d after); the test wants steady writes", before, after)
	}
	for _, s := range steady {
		if f.last[s.id] > 0 { // orders the writer reached
			all = append(all, s)
		}
	}
	e.waitCaughtUp(t, readmodel.NameOrderSummary, f.lastByPartition())
	compare(t, e.rows(t), fold(t, storedEvents(t, e.store, ids(all)), nil), "orders", "order_items")
}
