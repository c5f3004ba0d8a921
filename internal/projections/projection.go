// Package projections runs read-model projections over the event store: it
// splits a projection's partitions among replicas, feeds each owned
// partition's events in order to the projection in batches, writes the
// read-model rows and the partition's cursor in one Postgres transaction,
// dead-letters poison events, rebuilds a projection blue/green, and reports
// lag. The read models themselves live in package readmodel.
package projections

import (
	"context"
	"errors"
	"fmt"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"

	"github.com/jetsource/jetsource/contract"
	"github.com/jetsource/jetsource/internal/projections/migrations"
)

// Projection turns events into read-model rows.
//
// Apply gets events of one partition in stream order; the events of each
// order continue, without gaps, from the last one Apply was given for that
// order (the runner holds later events of an order back while an earlier one
// is dead-lettered). Apply writes through tx only, using table names without
// a schema, and cannot commit or roll back (Tx): the runner points search_path at the live schema, or at a
// rebuild's shadow schema. It must be deterministic (no now(), no random
// ids), so that a rebuild produces the same rows, and keep no state between
// calls. An error rolls back everything Apply wrote; the runner then
// re-applies the events one at a time to find and dead-letter the culprit.
type Projection interface {
	// Name identifies the projection in checkpoints, dead letters, locks
	// and consumer names: 1 to 24 characters from [a-z0-9_].
	Name() string
	// Tables lists the tables the projection owns, without a schema. A
	// rebuild creates fresh copies of exactly these and swaps them in.
	Tables() []string
	Apply(ctx context.Context, tx Tx, events []contract.Event) error
}

// Tx is what a projection may do in the runner's transaction: statements,
// batches and copies. It has no Commit or Rollback: the runner commits the
// rows together with the cursor and the dead letters, or none of them.
type Tx interface {
	Exec(ctx context.Context, sql string, args ...any) (pgconn.CommandTag, error)
	Query(ctx context.Context, sql string, args ...any) (pgx.Rows, error)
	QueryRow(ctx context.Context, sql string, args ...any) pgx.Row
	SendBatch(ctx context.Context, b *pgx.Batch) pgx.BatchResults
	CopyFrom(ctx context.Context, table pgx.Identifier, columns []string, rows pgx.CopyFromSource) (int64, error)
}

// statements is the runner's transaction as a projection sees it: a type
// assertion cannot get the pgx.Tx back.
type statements struct{ tx pgx.Tx }

func (s statements) Exec(ctx context.Context, sql string, args ...any) (pgconn.CommandTag, error) {
	return s.tx.Exec(ctx, sql, args...)
}

func (s statements) Query(ctx context.Context, sql string, args ...any) (pgx.Rows, error) {
	return s.tx.Query(ctx, sql, args...)
}

func (s statements) QueryRow(ctx context.Context, sql string, args ...any) pgx.Row {
	return s.tx.QueryRow(ctx, sql, args...)
}

func (s statements) SendBatch(ctx context.Context, b *pgx.Batch) pgx.BatchResults {
	return s.tx.SendBatch(ctx, b)
}

func (s statements) CopyFrom(ctx context.Context, table pgx.Identifier, columns []string, rows pgx.CopyFromSource) (int64, error) {
	return s.tx.CopyFrom(ctx, table, columns, rows)
}

// maxProjectionName keeps derived names (shadow schema, consumer names,
// schema_rebuild_name) within Postgres' 63-byte identifiers.
const maxProjectionName = 24

// ErrInvalidProjection means a projection's name or tables are unusable.
var ErrInvalidProjection = errors.New("invalid projection")

func checkProjection(p Projection) error {
	if p == nil {
		return fmt.Errorf("%w: none given", ErrInvalidProjection)
	}
	var errs []error
	if !migrations.PlainIdentifier(p.Name(), maxProjectionName) {
		errs = append(errs, fmt.Errorf("%w: name %q: use 1 to %d characters from a-z, 0-9 and _, not starting with a digit",
			ErrInvalidProjection, p.Name(), maxProjectionName))
	}
	if len(p.Tables()) == 0 {
		errs = append(errs, fmt.Errorf("%w: %s owns no tables", ErrInvalidProjection, p.Name()))
	}
	for _, t := range p.Tables() {
		if !migrations.PlainIdentifier(t, 63) {
			errs = append(errs, fmt.Errorf("%w: %s: table name %q is not a plain identifier", ErrInvalidProjection, p.Name(), t))
		}
	}
	return errors.Join(errs...)
}
