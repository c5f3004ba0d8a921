package projections_test

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"slices"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/jetsource/jetsource/contract"
	"github.com/jetsource/jetsource/internal/es"
	"github.com/jetsource/jetsource/internal/eventually"
	"github.com/jetsource/jetsource/internal/natstest"
	"github.com/jetsource/jetsource/internal/pgtest"
	"github.com/jetsource/jetsource/internal/projections"
	"github.com/jetsource/jetsource/internal/projections/migrations"
)

var cluster *pgtest.Cluster

func TestMain(m *testing.M) { pgtest.Main(m, &cluster) }

const schema = projections.DefaultSchema

// env is one test's event store and database.
type env struct {
	js    jetstream.JetStream
	store *es.Store
	url   string
	db    *pgxpool.Pool
	admin *projections.Admin
}

func newEnv(t testing.TB) *env {
	t.Helper()
	_, _, js := natstest.Streams(t, natstest.Partitions)
	e := &env{js: js, store: es.NewStore(js, natstest.Partitions), url: cluster.DB(t)}
	e.db = e.pool(t, "test")
	if _, err := migrations.Apply(context.Background(), e.db, schema); err != nil {
		t.Fatal(err)
	}
	admin, err := projections.NewAdmin(e.db, js, projections.AdminConfig{Schema: schema, Partitions: natstest.Partitions})
	if err != nil {
		t.Fatal(err)
	}
	e.admin = admin
	return e
}

// pool opens a pool whose connections carry an application name, so a test
// can find and kill them.
func (e *env) pool(t testing.TB, app string) *pgxpool.Pool {
	t.Helper()
	cfg, err := pgxpool.ParseConfig(e.url)
	if err != nil {
		t.Fatal(err)
	}
	cfg.ConnConfig.RuntimeParams["application_name"] = app
	cfg.MaxConns = 8
	p, err := pgxpool.NewWithConfig(context.Background(), cfg)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(p.Close)
	return p
}

// replica is a running Runner.
type replica struct {
	*projections.Runner
	name   string
	cancel context.CancelFunc
	done   chan struct{}
	err    error // Run's result, set before done is closed
}

// stop drains the runner and waits for it.
func (r *replica) stop(t testing.TB) {
	t.Helper()
	r.cancel()
	select {
	case <-r.done:
		if r.err != nil {
			t.Errorf("runner %s: %v", r.name, r.err)
		}
	case <-time.After(30 * time.Second):
		t.Fatalf("runner %s did not stop", r.name)
	}
}

// start runs a replica of p on a pool of its own (application name = name)
// until stopped or the test ends. cfg's zero fields take fast test values.
func (e *env) start(t testing.TB, name string, cfg projections.Config) *replica {
	t.Helper()
	cfg.Schema, cfg.ReplicaID = schema, name
	if cfg.Heartbeat == 0 {
		cfg.Heartbeat = 100 * time.Millisecond
	}
	if cfg.ReplicaTTL == 0 {
		// Ten heartbeats: a replica that misses a few under a loaded CI machine
		// is not counted out, which would move partitions mid-test.
		cfg.ReplicaTTL = time.Second
	}
	if cfg.Logger == nil && testing.Verbose() {
		cfg.Logger = slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelInfo})).With("replica", name)
	}
	r, err := projections.NewRunner(e.pool(t, name), e.js, cfg)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	rep := &replica{Runner: r, name: name, cancel: cancel, done: make(chan struct{})}
	go func() {
		defer close(rep.done)
		rep.err = r.Run(ctx)
	}()
	t.Cleanup(func() {
		cancel()
		select {
		case <-rep.done:
		case <-time.After(30 * time.Second):
		}
	})
	return rep
}

// waitCaughtUp waits until every partition of the projection has its
// checkpoint at the given sequences.
func (e *env) waitCaughtUp(t testing.TB, projection string, want map[int]uint64) {
	t.Helper()
	eventually.Holds(t, 60*time.Second, projection+" to catch up", func() (bool, string) {
		cps, err := e.admin.Checkpoints(context.Background(), projection)
		if err != nil {
			return false, err.Error()
		}
		for p, seq := range want {
			if cps[p].LastSequence < seq {
				return false, fmt.Sprintf("partition %d at %d of %d", p, cps[p].LastSequence, seq)
			}
		}
		return true, ""
	})
}

// killConnections ends the database sessions of an application name, as a
// crash or a network cut would.
func (e *env) killConnections(t testing.TB, app string) {
	t.Helper()
	var n int
	if err := e.db.QueryRow(context.Background(), `SELECT count(pg_terminate_backend(pid, 5000)) FROM pg_stat_activity
		WHERE datname = current_database() AND application_name = $1`, app).Scan(&n); err != nil {
		t.Fatal(err)
	}
	if n == 0 {
		t.Fatalf("no sessions of %s to kill", app)
	}
}

// rows renders the live read-model tables like fold does.
func (e *env) rows(t testing.TB) expected {
	t.Helper()
	ctx := context.Background()
	var got expected
	query := func(sql string, scan func(pgx.CollectableRow) (string, error)) []string {
		rows, err := e.db.Query(ctx, sql)
		if err != nil {
			t.Fatal(err)
		}
		out, err := pgx.CollectRows(rows, func(r pgx.CollectableRow) (string, error) { return scan(r) })
		if err != nil {
			t.Fatal(err)
		}
		slices.Sort(out)
		return out
	}
	got.orders = query(`SELECT id, customer_id, currency, status, total_cents, item_count, payment_id, paid_cents,
		payment_method, tracking_number, carrier, cancel_reason, created_at, submitted_at, paid_at, shipped_at,
		delivered_at, canceled_at, updated_at, version, last_sequence FROM jetsource.orders`, func(r pgx.CollectableRow) (string, error) {
		var (
			id, customer, currency, status                  string
			total, version, lastSeq                         int64
			items                                           int
			paymentID, method, tracking, carrier, reason    *string
			paid                                            *int64
			created, updated                                time.Time
			submitted, paidAt, shipped, delivered, canceled *time.Time
		)
		err := r.Scan(&id, &customer, &currency, &status, &total, &items, &paymentID, &paid, &method, &tracking, &carrier,
			&reason, &created, &submitted, &paidAt, &shipped, &delivered, &canceled, &updated, &version, &lastSeq)
		return orderLine(id, customer, currency, status, total, items, deref(paymentID), paid, deref(method), deref(tracking),
			deref(carrier), deref(reason), created, deref(submitted), deref(paidAt), deref(shipped), deref(delivered),
			deref(canceled), updated, version, lastSeq), err
	})
	got.items = query(`SELECT order_id, product_id, quantity, unit_price_cents FROM jetsource.order_items`, func(r pgx.CollectableRow) (string, error) {
		var (
			id, product    string
			quantity, cent int64
		)
		err := r.Scan(&id, &product, &quantity, &cent)
		return fmt.Sprintf("%s|%s|%d|%d", id, product, quantity, cent), err
	})
	got.history = query(`SELECT event_id, order_id, version, stream_sequence, event_type, schema_version, data::text,
		user_id, correlation_id, causation_id, occurred_at FROM jetsource.order_history`, func(r pgx.CollectableRow) (string, error) {
		var (
			id, orderID, typ, data string
			version, seq           int64
			schemaVersion          int
			user, corr, cause      *string
			at                     time.Time
		)
		if err := r.Scan(&id, &orderID, &version, &seq, &typ, &schemaVersion, &data, &user, &corr, &cause, &at); err != nil {
			return "", err
		}
		return fmt.Sprintf("%s|%s|%d|%d|%s|%d|%s|%s|%s|%s|%s", id, orderID, version, seq, typ, schemaVersion,
			canonicalJSON(t, []byte(data)), str(deref(user)), str(deref(corr)), str(deref(cause)), ts(at)), nil
	})
	got.sales = query(`SELECT day, currency, orders_paid, revenue_cents, orders_canceled FROM jetsource.sales_daily`, func(r pgx.CollectableRow) (string, error) {
		var (
			day                     time.Time
			cur                     string
			paid, revenue, canceled int64
		)
		err := r.Scan(&day, &cur, &paid, &revenue, &canceled)
		return fmt.Sprintf("%s|%s|%d|%d|%d", day.Format(time.DateOnly), cur, paid, revenue, canceled), err
	})
	return got
}

func deref[T any](p *T) T {
	var zero T
	if p == nil {
		return zero
	}
	return *p
}

// compare fails the test where the given read models differ from want.
func compare(t testing.TB, got, want expected, which ...string) {
	t.Helper()
	for _, w := range which {
		var d string
		switch w {
		case "orders":
			d = diff(w, got.orders, want.orders)
		case "order_items":
			d = diff(w, got.items, want.items)
		case "order_history":
			d = diff(w, got.history, want.history)
		case "sales_daily":
			d = diff(w, got.sales, want.sales)
		default:
			t.Fatalf("unknown table %s", w)
		}
		if d != "" {
			t.Error(d)
		}
	}
}

var allTables = []string{"orders", "order_items", "order_history", "sales_daily"}

// hook wraps a projection to fail or hold Apply: before runs ahead of the
// projection's Apply, after once it has written its rows (uncommitted).
type hook struct {
	projections.Projection
	before, after func(ctx context.Context, events []contract.Event) error
}

func (h hook) Apply(ctx context.Context, tx projections.Tx, events []contract.Event) error {
	if h.before != nil {
		if err := h.before(ctx, events); err != nil {
			return err
		}
	}
	if err := h.Projection.Apply(ctx, tx, events); err != nil {
		return err
	}
	if h.after != nil {
		return h.after(ctx, events)
	}
	return nil
}

var errInjected = errors.New("injected failure")
