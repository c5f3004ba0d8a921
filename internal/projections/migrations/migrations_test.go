package migrations_test

import (
	"errors"
	"sync"
	"testing"

	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/jetsource/jetsource/internal/pgtest"
	"github.com/jetsource/jetsource/internal/projections/migrations"
)

var cluster *pgtest.Cluster

func TestMain(m *testing.M) { pgtest.Main(m, &cluster) }

func pool(t *testing.T) *pgxpool.Pool {
	t.Helper()
	p, err := pgxpool.New(t.Context(), cluster.DB(t))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(p.Close)
	return p
}

func TestAllIsOrderedAndComplete(t *testing.T) {
	all, err := migrations.All()
	if err != nil {
		t.Fatal(err)
	}
	if len(all) == 0 {
		t.Fatal("no migrations embedded")
	}
	for i, m := range all {
		if m.Version != i+1 || m.Name == "" || m.SQL == "" {
			t.Errorf("migration %d is %d %q (%d bytes of SQL); want versions 1..n without gaps", i, m.Version, m.Name, len(m.SQL))
		}
	}
}

// TestConcurrentReplicasApplyOnce starts four replicas at once on a fresh
// database: each migration must be applied exactly once, into the
// configured schema, and a later start must find nothing to do.
func TestConcurrentReplicasApplyOnce(t *testing.T) {
	db := pool(t)
	all, _ := migrations.All()
	const schema = "readmodels"

	var (
		wg      sync.WaitGroup
		mu      sync.Mutex
		applied []int
	)
	for range 4 {
		wg.Go(func() {
			vs, err := migrations.Apply(t.Context(), db, schema)
			if err != nil {
				t.Error(err)
			}
			mu.Lock()
			applied = append(applied, vs...)
			mu.Unlock()
		})
	}
	wg.Wait()
	if len(applied) != len(all) {
		t.Fatalf("the replicas applied versions %v together; want each of %d once", applied, len(all))
	}
	if again, err := migrations.Apply(t.Context(), db, schema); err != nil || len(again) != 0 {
		t.Fatalf("second start applied %v, %v; want nothing", again, err)
	}
	var recorded int
	if err := db.QueryRow(t.Context(), "SELECT count(*) FROM readmodels.schema_migrations").Scan(&recorded); err != nil || recorded != len(all) {
		t.Fatalf("schema_migrations has %d rows, %v; want %d", recorded, err, len(all))
	}
	for _, table := range []string{"projection_checkpoints", "projection_dead_letters", "projection_replicas",
		"orders", "order_items", "order_history", "sales_daily", "sales_daily_orders"} {
		var schemaOf string
		err := db.QueryRow(t.Context(), "SELECT table_schema FROM information_schema.tables WHERE table_name = $1", table).Scan(&schemaOf)
		if err != nil || schemaOf != schema {
			t.Errorf("table %s is in schema %q, %v; want %s", table, schemaOf, err, schema)
		}
	}
}

func TestRejectsUnsafeSchemaNames(t *testing.T) {
	db := pool(t)
	for _, name := range []string{"", "Public", "a-b", "x; DROP TABLE y", "1abc", "abcdefghijklmnopqrstuvwxyz012345"} {
		if _, err := migrations.Apply(t.Context(), db, name); !errors.Is(err, migrations.ErrSchemaName) {
			t.Errorf("Apply(%q) = %v; want ErrSchemaName", name, err)
		}
	}
}
