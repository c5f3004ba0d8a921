package pgtest_test

import (
	"context"
	"testing"

	"github.com/jackc/pgx/v5"

	"github.com/jetsource/jetsource/internal/pgtest"
)

// cluster is shared by the tests of this package; TestMain sets it.
var cluster *pgtest.Cluster

func TestMain(m *testing.M) { pgtest.Main(m, &cluster) }

func connect(t *testing.T, url string) *pgx.Conn {
	t.Helper()
	conn, err := pgx.Connect(t.Context(), url)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { conn.Close(context.Background()) })
	return conn
}

// TestIsolation runs two tests at once that create the same table; in a
// shared database one CREATE TABLE would fail, or a count would be 2.
func TestIsolation(t *testing.T) {
	for _, name := range []string{"a", "b"} {
		t.Run(name, func(t *testing.T) {
			t.Parallel()
			conn := connect(t, cluster.DB(t))
			if _, err := conn.Exec(t.Context(), "CREATE TABLE marker (name text)"); err != nil {
				t.Fatal(err)
			}
			if _, err := conn.Exec(t.Context(), "INSERT INTO marker VALUES ($1)", name); err != nil {
				t.Fatal(err)
			}
			var n int
			if err := conn.QueryRow(t.Context(), "SELECT count(*) FROM marker").Scan(&n); err != nil || n != 1 {
				t.Errorf("marker rows: %d, %v", n, err)
			}
		})
	}
}

// TestDropped checks that a test's database is gone after the test, even
// though the test left a connection open.
func TestDropped(t *testing.T) {
	var db string
	t.Run("sub", func(t *testing.T) {
		conn, err := pgx.Connect(t.Context(), cluster.DB(t))
		if err != nil {
			t.Fatal(err)
		}
		if err := conn.QueryRow(t.Context(), "SELECT current_database()").Scan(&db); err != nil {
			t.Fatal(err)
		}
	})
	admin := connect(t, cluster.DB(t))
	var exists bool
	if err := admin.QueryRow(t.Context(), "SELECT EXISTS (SELECT FROM pg_database WHERE datname = $1)", db).Scan(&exists); err != nil {
		t.Fatal(err)
	}
	if db == "" || exists {
		t.Errorf("database %q of a finished test still exists", db)
	}
}
