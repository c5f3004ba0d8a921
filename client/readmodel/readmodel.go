// Package readmodel gives services that read JetSource's Postgres read
// models read-your-writes: after a command's result, WaitForProjection
// waits until a projection has projected the command's events.
//
// It reads only the projections' cursors (table projection_checkpoints),
// so it needs no NATS connection and works against any replica count.
package readmodel

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/jetsource/jetsource/contract"
)

// Querier runs one query: a *pgxpool.Pool, a *pgx.Conn, or a pgx.Tx at
// READ COMMITTED (in a REPEATABLE READ transaction the cursor never moves).
type Querier interface {
	QueryRow(ctx context.Context, sql string, args ...any) pgx.Row
}

// Polling starts fast, because a projection usually follows within a few
// milliseconds, and backs off so a stuck projection costs little.
const (
	firstPoll = 2 * time.Millisecond
	maxPoll   = 100 * time.Millisecond
)

// WaitForProjection returns nil once the projection's cursor for the
// partition of r's order has reached r.StreamSequence: the read model then
// holds the command's events and every earlier event of the order. A
// rejected result appended nothing, so it returns nil at once. It polls
// projection_checkpoints in schema (backing off from 2 ms to 100 ms) until
// ctx ends, so give ctx a deadline.
//
// partitions is the partition count the streams were created with (16
// unless configured otherwise). A cursor also moves past an event that was
// dead-lettered: the command's effect is then missing from the read model
// until an operator retries it (orderctl dlq).
func WaitForProjection(ctx context.Context, db Querier, schema, projection string, partitions int, r contract.Result) error {
	switch {
	case r.Status == contract.StatusRejected:
		return nil
	case r.Status != contract.StatusAccepted:
		return fmt.Errorf("wait for %s: result of command %q has status %q", projection, r.CommandID, r.Status)
	case r.StreamSequence == 0 || r.OrderID == "":
		// The aggregator never sends this: an accepted command always
		// appended events. Waiting would return at once and prove nothing.
		return fmt.Errorf("wait for %s: accepted result of command %q names no order or stream sequence", projection, r.CommandID)
	case partitions < 1:
		return fmt.Errorf("wait for %s: partition count %d must be at least 1", projection, partitions)
	}
	partition := contract.Partition(r.OrderID, partitions)
	query := `SELECT last_sequence FROM ` + pgx.Identifier{schema, "projection_checkpoints"}.Sanitize() +
		` WHERE projection = $1 AND partition = $2`
	for wait := firstPoll; ; wait = min(2*wait, maxPoll) {
		var cursor int64
		err := db.QueryRow(ctx, query, projection, partition).Scan(&cursor)
		switch {
		case errors.Is(err, pgx.ErrNoRows): // the partition has not run yet
		case err != nil:
			return fmt.Errorf("wait for %s to reach sequence %d: read cursor of partition %d: %w",
				projection, r.StreamSequence, partition, err)
		case uint64(cursor) >= r.StreamSequence:
			return nil
		}
		select {
		case <-ctx.Done():
			return fmt.Errorf("wait for %s to reach sequence %d in partition %d (cursor %d): %w",
				projection, r.StreamSequence, partition, cursor, ctx.Err())
		case <-time.After(wait):
		}
	}
}
