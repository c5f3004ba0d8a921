package projections_test

import (
	"context"
	"errors"
	"os"
	"testing"
	"time"

	"github.com/jackc/pgx/v5/pgconn"
	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/jetsource/jetsource/internal/projections"
	"github.com/jetsource/jetsource/internal/projections/migrations"
	"github.com/jetsource/jetsource/internal/projections/readmodel"
)

// withRoles creates the roles of deploy/postgres/roles.sql and grants them
// their privileges on the test's schema, as orderctl migrate does.
func withRoles(t testing.TB, e *env) {
	t.Helper()
	ctx := context.Background()
	sql, err := os.ReadFile("../../deploy/postgres/roles.sql")
	if err != nil {
		t.Fatal(err)
	}
	if _, err := e.db.Exec(ctx, string(sql)); err != nil {
		t.Fatalf("roles.sql: %v", err)
	}
	for _, name := range readmodel.Names() {
		p, err := readmodel.New(name)
		if err != nil {
			t.Fatal(err)
		}
		granted, err := migrations.Grant(ctx, e.db, schema, name, p.Tables())
		if err != nil {
			t.Fatal(err)
		}
		if len(granted) != 2 || granted[0] != migrations.ProjectorRole(name) {
			t.Fatalf("roles.sql lacks the runtime role of %s: granted %v", name, granted)
		}
	}
}

// poolAs is a pool on the test's database logged in as role.
func (e *env) poolAs(t testing.TB, role string) *pgxpool.Pool {
	t.Helper()
	cfg, err := pgxpool.ParseConfig(e.url)
	if err != nil {
		t.Fatal(err)
	}
	cfg.ConnConfig.User = role
	p, err := pgxpool.NewWithConfig(context.Background(), cfg)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(p.Close)
	return p
}

// insufficientPrivilege: permission denied, or a row refused by a
// row-level security policy.
func insufficientPrivilege(err error) bool {
	var pgErr *pgconn.PgError
	return errors.As(err, &pgErr) && pgErr.Code == "42501"
}

// TestRuntimeRoleKeepsToItsProjection runs the order_summary projection as
// its runtime role, and shows that this role projects, but cannot change
// the schema, write another projection's tables, or see or write another
// projection's cursor, dead letters and ownership; and that the reader role
// reads but cannot write.
func TestRuntimeRoleKeepsToItsProjection(t *testing.T) {
	e := newEnv(t)
	withRoles(t, e)
	ctx := context.Background()
	// Another projection's cursor, dead letter and owner row.
	for _, q := range []string{
		`INSERT INTO jetsource.projection_checkpoints (projection, partition, last_sequence) VALUES ('order_history', 0, 5)`,
		`INSERT INTO jetsource.projection_dead_letters (projection, partition, stream_sequence, subject, order_id, body, status)
			VALUES ('order_history', 0, 3, 'orders.events.0.x', 'x', '\x00', 'failed')`,
		`INSERT INTO jetsource.projection_owners (projection, partition, epoch) VALUES ('order_history', 0, 1)`,
	} {
		if _, err := e.db.Exec(ctx, q); err != nil {
			t.Fatal(err)
		}
	}

	f := newFeeder(e.store, 1)
	f.run(t, f.scripts("ord", 20)...)
	last := f.lastByPartition()
	summary, err := readmodel.New(readmodel.NameOrderSummary)
	if err != nil {
		t.Fatal(err)
	}
	role := migrations.ProjectorRole(readmodel.NameOrderSummary)
	pool := e.poolAs(t, role)
	r, err := projections.NewRunner(pool, e.js, projections.Config{Projection: summary, Schema: schema, ReplicaID: "runtime-role",
		Heartbeat: 100 * time.Millisecond, ReplicaTTL: time.Second})
	if err != nil {
		t.Fatal(err)
	}
	runCtx, stop := context.WithCancel(ctx)
	done := make(chan error, 1)
	go func() { done <- r.Run(runCtx) }()
	e.waitCaughtUp(t, readmodel.NameOrderSummary, last)
	stop()
	if err := <-done; err != nil {
		t.Fatalf("runner as %s: %v", role, err)
	}

	as := func(pool *pgxpool.Pool, sql string) (int64, error) {
		tag, err := pool.Exec(ctx, sql)
		return tag.RowsAffected(), err
	}
	for _, q := range []string{
		"DROP TABLE jetsource.orders",
		"TRUNCATE jetsource.orders",
		"ALTER TABLE jetsource.orders ADD COLUMN x int",
		"CREATE TABLE jetsource.x (id int)",
		"DROP SCHEMA jetsource CASCADE",
		"INSERT INTO jetsource.order_history (event_id, order_id, version, stream_sequence, event_type, schema_version, data, occurred_at) VALUES ('e', 'o', 1, 1, 't', 1, '{}', now())",
		"DELETE FROM jetsource.sales_daily",
		"INSERT INTO jetsource.projection_checkpoints (projection, partition) VALUES ('order_history', 1)",
		"INSERT INTO jetsource.projection_owners (projection, partition, epoch) VALUES ('sales_daily', 0, 9)",
		"DELETE FROM jetsource.projection_checkpoints",
		`INSERT INTO jetsource.projection_dead_letters (projection, partition, stream_sequence, subject, order_id, body, status)
			VALUES ('order_history', 0, 4, 'orders.events.0.x', 'x', '\x00', 'failed')`,
		"INSERT INTO jetsource.schema_migrations (version, name) VALUES (999, 'x')",
	} {
		if _, err := as(pool, q); !insufficientPrivilege(err) {
			t.Errorf("%s as %s: %v, want insufficient privilege", q, role, err)
		}
	}
	// Other projections' rows are invisible: updates find nothing.
	for _, q := range []string{
		"UPDATE jetsource.projection_checkpoints SET last_sequence = 0 WHERE projection = 'order_history'",
		"UPDATE jetsource.projection_dead_letters SET status = 'skipped' WHERE projection = 'order_history'",
		"UPDATE jetsource.projection_owners SET epoch = 99 WHERE projection = 'order_history'",
		"DELETE FROM jetsource.projection_replicas WHERE projection <> 'order_summary'",
	} {
		if n, err := as(pool, q); err != nil || n != 0 {
			t.Errorf("%s as %s: %d rows, %v; want 0 rows", q, role, n, err)
		}
	}
	var seq, epoch int64
	var status string
	if err := e.db.QueryRow(ctx, `SELECT (SELECT last_sequence FROM jetsource.projection_checkpoints WHERE projection = 'order_history' AND partition = 0),
		(SELECT status FROM jetsource.projection_dead_letters WHERE projection = 'order_history'),
		(SELECT epoch FROM jetsource.projection_owners WHERE projection = 'order_history')`).Scan(&seq, &status, &epoch); err != nil {
		t.Fatal(err)
	}
	if seq != 5 || status != "failed" || epoch != 1 {
		t.Fatalf("order_history's rows changed: cursor %d, dead letter %s, epoch %d", seq, status, epoch)
	}
	// Its own rows it reads and writes.
	for _, q := range []string{
		"UPDATE jetsource.projection_checkpoints SET updated_at = now() WHERE projection = 'order_summary'",
		`INSERT INTO jetsource.projection_dead_letters (projection, partition, stream_sequence, subject, order_id, body, status)
			VALUES ('order_summary', 0, 4, 'orders.events.0.x', 'x', '\x00', 'failed')`,
	} {
		if n, err := as(pool, q); err != nil || n == 0 {
			t.Fatalf("%s as %s: %d rows, %v", q, role, n, err)
		}
	}

	reader := e.poolAs(t, migrations.ReaderRole)
	var orders, cursors int
	if err := reader.QueryRow(ctx, `SELECT (SELECT count(*) FROM jetsource.orders), (SELECT count(DISTINCT projection) FROM jetsource.projection_checkpoints)`).
		Scan(&orders, &cursors); err != nil {
		t.Fatalf("reader: %v", err)
	}
	if orders != 20 || cursors != 2 {
		t.Fatalf("reader sees %d orders and the cursors of %d projections; want 20 and 2", orders, cursors)
	}
	for _, q := range []string{
		"INSERT INTO jetsource.sales_daily (day, currency) VALUES ('2026-01-01', 'EUR')",
		"UPDATE jetsource.orders SET status = 'x'",
		"UPDATE jetsource.projection_checkpoints SET last_sequence = 0",
		"SELECT * FROM jetsource.projection_dead_letters",
		"DROP TABLE jetsource.orders",
	} {
		if _, err := as(reader, q); !insufficientPrivilege(err) {
			t.Errorf("%s as %s: %v, want insufficient privilege", q, migrations.ReaderRole, err)
		}
	}
	var n int
	if err := e.db.QueryRow(ctx, "SELECT count(*) FROM jetsource.orders").Scan(&n); err != nil || n != 20 {
		t.Fatalf("orders after the attempts: %d, %v", n, err)
	}
}

// TestRebuildKeepsTheRolesGrants: the tables a rebuild swaps in carry the
// runtime and reader roles' privileges, as the tables they replace did.
func TestRebuildKeepsTheRolesGrants(t *testing.T) {
	e := newEnv(t)
	withRoles(t, e)
	ctx := context.Background()
	f := newFeeder(e.store, 2)
	f.run(t, f.scripts("ord", 5)...)
	summary, err := readmodel.New(readmodel.NameOrderSummary)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := e.admin.Rebuild(ctx, summary, projections.RebuildOptions{ProgressEvery: 50 * time.Millisecond}); err != nil {
		t.Fatal(err)
	}
	role := migrations.ProjectorRole(readmodel.NameOrderSummary)
	for _, table := range summary.Tables() {
		for _, check := range []struct {
			role, privilege string
		}{{role, "INSERT"}, {role, "UPDATE"}, {role, "DELETE"}, {role, "SELECT"}, {migrations.ReaderRole, "SELECT"}} {
			var ok bool
			if err := e.db.QueryRow(ctx, "SELECT has_table_privilege($1, $2, $3)", check.role, schema+"."+table, check.privilege).Scan(&ok); err != nil {
				t.Fatal(err)
			}
			if !ok {
				t.Errorf("after the rebuild %s lacks %s on %s", check.role, check.privilege, table)
			}
		}
	}
}
