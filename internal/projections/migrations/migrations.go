// Package migrations holds the versioned SQL that creates the projections'
// tables, and the small runner that applies it at start-up.
package migrations

import (
	"context"
	"embed"
	"errors"
	"fmt"
	"hash/fnv"
	"io/fs"
	"path"
	"sort"
	"strconv"
	"strings"

	"github.com/jackc/pgx/v5"

	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/jetsource/jetsource/internal/config"
)

//go:embed sql/*.sql
var files embed.FS

// ErrSchemaName means a schema name is not a plain lower-case identifier.
var ErrSchemaName = errors.New("invalid schema name")

// MaxSchemaName leaves room in Postgres' 63-byte identifiers for the
// suffixes a rebuild adds to the schema name.
const MaxSchemaName = 30

// CheckSchemaName reports whether name can be used as the schema of the
// read models: 1 to 30 characters from [a-z0-9_], not starting with a digit.
func CheckSchemaName(name string) error {
	if !PlainIdentifier(name, MaxSchemaName) {
		return fmt.Errorf("%w: %q: use 1 to %d characters from a-z, 0-9 and _, not starting with a digit",
			ErrSchemaName, name, MaxSchemaName)
	}
	return nil
}

// ValidateSchema checks a configuration field that names the schema, as
// CheckSchemaName does, and reports a problem as a config.FieldError.
func ValidateSchema(field, name string) error {
	if !PlainIdentifier(name, MaxSchemaName) {
		return config.Invalid(field, name, "must be 1 to %d characters from a-z, 0-9 and _, not starting with a digit", MaxSchemaName)
	}
	return nil
}

// PlainIdentifier reports whether s is 1 to max characters from [a-z0-9_],
// not starting with a digit: a Postgres identifier that needs no quoting.
func PlainIdentifier(s string, max int) bool {
	if s == "" || len(s) > max || s[0] >= '0' && s[0] <= '9' {
		return false
	}
	for i := 0; i < len(s); i++ {
		c := s[i]
		if !(c >= 'a' && c <= 'z' || c >= '0' && c <= '9' || c == '_') {
			return false
		}
	}
	return true
}

// Migration is one embedded SQL file, named NNNN_name.sql.
type Migration struct {
	Version int
	Name    string
	SQL     string
}

// All returns the embedded migrations in version order.
func All() ([]Migration, error) {
	entries, err := fs.ReadDir(files, "sql")
	if err != nil {
		return nil, fmt.Errorf("read embedded migrations: %w", err)
	}
	var out []Migration
	seen := map[int]string{}
	for _, e := range entries {
		base := strings.TrimSuffix(e.Name(), ".sql")
		num, name, ok := strings.Cut(base, "_")
		v, err := strconv.Atoi(num)
		if !ok || err != nil || v < 1 {
			return nil, fmt.Errorf("migration file %s: want NNNN_name.sql", e.Name())
		}
		if other, dup := seen[v]; dup {
			return nil, fmt.Errorf("migrations %s and %s share version %d", other, e.Name(), v)
		}
		seen[v] = e.Name()
		body, err := fs.ReadFile(files, path.Join("sql", e.Name()))
		if err != nil {
			return nil, fmt.Errorf("read migration %s: %w", e.Name(), err)
		}
		out = append(out, Migration{Version: v, Name: name, SQL: string(body)})
	}
	sort.Slice(out, func(i, j int) bool { return out[i].Version < out[j].Version })
	return out, nil
}

// Apply creates schema if it is missing and applies, each in its own
// transaction, the migrations it has not recorded in schema_migrations. It
// holds a session advisory lock while it works, so replicas starting
// together apply each migration once; the others wait and then find nothing
// to do. It returns the versions it applied.
func Apply(ctx context.Context, pool *pgxpool.Pool, schema string) ([]int, error) {
	if err := CheckSchemaName(schema); err != nil {
		return nil, err
	}
	all, err := All()
	if err != nil {
		return nil, err
	}
	conn, err := pool.Acquire(ctx)
	if err != nil {
		return nil, fmt.Errorf("migrate %s: %w", schema, err)
	}
	defer conn.Release()

	key := lockKey(schema)
	if _, err := conn.Exec(ctx, "SELECT pg_advisory_lock($1)", key); err != nil {
		return nil, fmt.Errorf("migrate %s: take the migration lock: %w", schema, err)
	}
	defer func() {
		// If the unlock fails the connection is broken, and Postgres drops
		// the lock with the session; a pooled connection must not keep it.
		if _, err := conn.Exec(context.WithoutCancel(ctx), "SELECT pg_advisory_unlock($1)", key); err != nil {
			conn.Conn().Close(context.WithoutCancel(ctx))
		}
	}()

	ident := pgx.Identifier{schema}.Sanitize()
	if _, err := conn.Exec(ctx, "CREATE SCHEMA IF NOT EXISTS "+ident); err != nil {
		return nil, fmt.Errorf("migrate %s: create schema: %w", schema, err)
	}
	if _, err := conn.Exec(ctx, `CREATE TABLE IF NOT EXISTS `+ident+`.schema_migrations (
		version    integer     PRIMARY KEY,
		name       text        NOT NULL,
		applied_at timestamptz NOT NULL DEFAULT now())`); err != nil {
		return nil, fmt.Errorf("migrate %s: create schema_migrations: %w", schema, err)
	}
	rows, err := conn.Query(ctx, "SELECT version FROM "+ident+".schema_migrations")
	if err != nil {
		return nil, fmt.Errorf("migrate %s: read applied versions: %w", schema, err)
	}
	done, err := pgx.CollectRows(rows, pgx.RowTo[int32])
	if err != nil {
		return nil, fmt.Errorf("migrate %s: read applied versions: %w", schema, err)
	}
	applied := map[int]bool{}
	for _, v := range done {
		applied[int(v)] = true
	}

	var versions []int
	for _, m := range all {
		if applied[m.Version] {
			continue
		}
		if err := apply(ctx, conn.Conn(), ident, m); err != nil {
			return versions, fmt.Errorf("migrate %s: %04d_%s: %w", schema, m.Version, m.Name, err)
		}
		versions = append(versions, m.Version)
	}
	return versions, nil
}

func apply(ctx context.Context, conn *pgx.Conn, ident string, m Migration) error {
	tx, err := conn.Begin(ctx)
	if err != nil {
		return err
	}
	defer tx.Rollback(context.WithoutCancel(ctx))
	// Migrations name tables without a schema; search_path puts them in
	// the configured one.
	if _, err := tx.Exec(ctx, "SET LOCAL search_path TO "+ident); err != nil {
		return err
	}
	if _, err := tx.Exec(ctx, m.SQL); err != nil {
		return err
	}
	if _, err := tx.Exec(ctx, "INSERT INTO "+ident+".schema_migrations (version, name) VALUES ($1, $2)", m.Version, m.Name); err != nil {
		return err
	}
	return tx.Commit(ctx)
}

// lockKey is the advisory lock that serializes migrations of one schema.
func lockKey(schema string) int64 {
	h := fnv.New64a()
	h.Write([]byte("jetsource/migrations/" + schema))
	return int64(h.Sum64())
}
