package migrations

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"strings"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"
)

// The runtime roles of deploy/postgres/roles.sql. The migrating role owns
// the schema and needs no grants.
const (
	// ReaderRole reads the read models and the checkpoints.
	ReaderRole = "jetsource_reader"
	// projectorRolePrefix + a projection's name is the role its projectors
	// run as.
	projectorRolePrefix = "jetsource_projector_"
)

// ProjectorRole is the runtime role of a projection's projectors.
func ProjectorRole(projection string) string { return projectorRolePrefix + projection }

// DB is what Grant and Check need: a pool, a connection or a transaction.
type DB interface {
	Exec(ctx context.Context, sql string, args ...any) (pgconn.CommandTag, error)
	QueryRow(ctx context.Context, sql string, args ...any) pgx.Row
}

// runnerGrants are a projector's privileges on the runner's tables; row-level
// security (migration 0006) keeps it to its own projection's rows.
var runnerGrants = []struct{ table, privileges string }{
	{"projection_checkpoints", "SELECT, INSERT, UPDATE"},
	{"projection_dead_letters", "SELECT, INSERT, UPDATE"},
	{"projection_replicas", "SELECT, INSERT, UPDATE, DELETE"},
	{"projection_owners", "SELECT, INSERT, UPDATE"},
}

// Grant gives the runtime roles of deploy/postgres/roles.sql that exist
// their privileges on the projection's tables in schema: the projection's
// role SELECT, INSERT, UPDATE and DELETE on them, its rows of the runner's
// tables and the owner epochs; the reader role SELECT on them and on the
// checkpoints. Roles that do not exist are skipped. The schema's owner runs
// it after Apply and after a rebuild swapped new tables in; it is
// idempotent. It returns the roles it granted privileges to.
func Grant(ctx context.Context, db DB, schema, projection string, tables []string) ([]string, error) {
	if err := CheckSchemaName(schema); err != nil {
		return nil, err
	}
	s := pgx.Identifier{schema}.Sanitize()
	qualified := make([]string, len(tables))
	for i, t := range tables {
		qualified[i] = s + "." + pgx.Identifier{t}.Sanitize()
	}
	var granted []string
	role := ProjectorRole(projection)
	ok, err := roleExists(ctx, db, role)
	if err != nil {
		return nil, err
	}
	if ok {
		r := pgx.Identifier{role}.Sanitize()
		stmts := []string{
			"GRANT USAGE ON SCHEMA " + s + " TO " + r,
			"GRANT SELECT ON " + s + ".schema_migrations TO " + r,
			"GRANT USAGE ON SEQUENCE " + s + ".projection_owner_epochs TO " + r,
			"GRANT SELECT, INSERT, UPDATE, DELETE ON " + strings.Join(qualified, ", ") + " TO " + r,
		}
		for _, g := range runnerGrants {
			stmts = append(stmts, "GRANT "+g.privileges+" ON "+s+"."+g.table+" TO "+r)
		}
		if err := execAll(ctx, db, stmts); err != nil {
			return nil, fmt.Errorf("grant %s: %w", role, err)
		}
		granted = append(granted, role)
	}
	ok, err = roleExists(ctx, db, ReaderRole)
	if err != nil {
		return nil, err
	}
	if ok {
		r := pgx.Identifier{ReaderRole}.Sanitize()
		stmts := []string{
			"GRANT USAGE ON SCHEMA " + s + " TO " + r,
			"GRANT SELECT ON " + s + ".schema_migrations, " + s + ".projection_checkpoints, " + strings.Join(qualified, ", ") + " TO " + r,
		}
		if err := execAll(ctx, db, stmts); err != nil {
			return nil, fmt.Errorf("grant %s: %w", ReaderRole, err)
		}
		granted = append(granted, ReaderRole)
	}
	return granted, nil
}

func roleExists(ctx context.Context, db DB, role string) (bool, error) {
	var ok bool
	if err := db.QueryRow(ctx, "SELECT EXISTS (SELECT 1 FROM pg_roles WHERE rolname = $1)", role).Scan(&ok); err != nil {
		return false, fmt.Errorf("look up role %s: %w", role, err)
	}
	return ok, nil
}

func execAll(ctx context.Context, db DB, stmts []string) error {
	for _, s := range stmts {
		if _, err := db.Exec(ctx, s); err != nil {
			return fmt.Errorf("%s: %w", s, err)
		}
	}
	return nil
}

// ErrNotMigrated means the schema lacks migrations this binary needs: run
// orderctl migrate (or a projector with PROJECTOR_MIGRATE=true).
var ErrNotMigrated = errors.New("schema not migrated")

// Check reports whether schema has every embedded migration applied,
// changing nothing: what a projector that does not migrate checks at
// start-up.
func Check(ctx context.Context, db DB, schema string) error {
	if err := CheckSchemaName(schema); err != nil {
		return err
	}
	all, err := All()
	if err != nil {
		return err
	}
	var versions []int32
	var exists bool
	if err := db.QueryRow(ctx, "SELECT to_regclass($1) IS NOT NULL", schema+".schema_migrations").Scan(&exists); err != nil {
		return fmt.Errorf("check migrations of %s: %w", schema, err)
	}
	if exists {
		if err := db.QueryRow(ctx, "SELECT coalesce(array_agg(version), '{}') FROM "+pgx.Identifier{schema, "schema_migrations"}.Sanitize()).Scan(&versions); err != nil {
			return fmt.Errorf("check migrations of %s: %w", schema, err)
		}
	}
	var missing []string
	for _, m := range all {
		if !slices.Contains(versions, int32(m.Version)) {
			missing = append(missing, fmt.Sprintf("%04d_%s", m.Version, m.Name))
		}
	}
	if len(missing) > 0 {
		return fmt.Errorf("%w: schema %s lacks %s; run orderctl migrate", ErrNotMigrated, schema, strings.Join(missing, ", "))
	}
	return nil
}
