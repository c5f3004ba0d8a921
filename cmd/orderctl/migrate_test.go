package main

import (
	"context"
	"errors"
	"net/url"
	"os"
	"strings"
	"testing"

	"github.com/jackc/pgx/v5"

	"github.com/jetsource/jetsource/internal/projections/migrations"
)

// TestMigrateAsTheMigratingRole: after deploy/postgres/roles.sql, the
// migrating role creates the schema with orderctl migrate and grants the
// runtime roles, which then find the schema migrated.
func TestMigrateAsTheMigratingRole(t *testing.T) {
	ctx := context.Background()
	admin := cluster.DB(t)
	roles, err := os.ReadFile("../../deploy/postgres/roles.sql")
	if err != nil {
		t.Fatal(err)
	}
	conn, err := pgx.Connect(ctx, admin)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close(ctx)
	if _, err := conn.Exec(ctx, string(roles)); err != nil {
		t.Fatalf("roles.sql: %v", err)
	}
	as := func(role string) string {
		u, _ := url.Parse(admin)
		u.User = url.User(role)
		return u.String()
	}

	runtime, err := pgx.Connect(ctx, as(migrations.ProjectorRole("order_history")))
	if err != nil {
		t.Fatal(err)
	}
	defer runtime.Close(ctx)
	if err := migrations.Check(ctx, runtime, "jetsource"); !errors.Is(err, migrations.ErrNotMigrated) || !strings.Contains(err.Error(), "orderctl migrate") {
		t.Fatalf("Check before migrating: %v", err)
	}

	t.Setenv("DATABASE_URL", as("jetsource_migrator"))
	code, out, errOut := orderctl("migrate")
	if code != 0 || !strings.Contains(out, "applied migration 0001") ||
		!strings.Contains(out, "granted jetsource_projector_order_history and jetsource_reader its privileges on order_history") {
		t.Fatalf("migrate: exit %d\n%s%s", code, out, errOut)
	}
	if code, out, _ := orderctl("migrate"); code != 0 || !strings.Contains(out, "schema jetsource is up to date") {
		t.Fatalf("migrate again: exit %d\n%s", code, out)
	}
	if err := migrations.Check(ctx, runtime, "jetsource"); err != nil {
		t.Fatalf("Check as the runtime role after migrating: %v", err)
	}
	var owner string
	if err := conn.QueryRow(ctx, "SELECT tableowner FROM pg_tables WHERE schemaname = 'jetsource' AND tablename = 'orders'").Scan(&owner); err != nil || owner != "jetsource_migrator" {
		t.Fatalf("orders is owned by %q (%v), want jetsource_migrator", owner, err)
	}

	t.Setenv("DATABASE_URL", as(migrations.ProjectorRole("order_history")))
	t.Setenv("JETSOURCE_SCHEMA", "other")
	if code, _, errOut := orderctl("migrate"); code != 1 || !strings.Contains(errOut, "permission denied") {
		t.Fatalf("migrate as a runtime role: exit %d\n%s", code, errOut)
	}
}
