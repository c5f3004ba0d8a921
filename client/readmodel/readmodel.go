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

// ErrDeadLettered is wrapped by the *DeadLetteredError WaitForProjection
// returns when the read model cannot show the command.
var ErrDeadLettered = errors.New("dead-lettered")

// DeadLetteredError says that a projection's cursor has passed a command's
// events, but one of the order's events up to them is an open dead letter
// (failed, or parked behind a failed one): the read model lacks it and the
// order's later events until an operator retries or skips it (orderctl
// dlq).
type DeadLetteredError struct {
	Projection, OrderID, CommandID string
	// ID is the dead letter's id; Sequence its event's stream sequence.
	ID       int64
	Sequence uint64
	// Status is failed or parked; Reason the failure.
	Status, Reason string
}

func (e *DeadLetteredError) Error() string {
	return fmt.Sprintf("%s cannot show command %s: the event of order %s at stream sequence %d is dead letter %d (%s: %s)",
		e.Projection, e.CommandID, e.OrderID, e.Sequence, e.ID, e.Status, e.Reason)
}

// Unwrap makes a DeadLetteredError match ErrDeadLettered.
func (e *DeadLetteredError) Unwrap() error { return ErrDeadLettered }

// WaitForProjection returns nil once the projection's cursor for the
// partition of r's order has reached r.StreamSequence and none of the
// order's events up to it is a dead letter: the read model then holds the
// command's events and every earlier event of the order. If one is, it
// returns a *DeadLetteredError. A rejected result appended nothing, so it
// returns nil at once. It polls projection_checkpoints in schema (backing
// off from 2 ms to 100 ms) until ctx ends, so give ctx a deadline.
//
// partitions is the partition count the streams were created with (16
// unless configured otherwise).
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
			return deadLettered(ctx, db, schema, projection, r)
		}
		select {
		case <-ctx.Done():
			return fmt.Errorf("wait for %s to reach sequence %d in partition %d (cursor %d): %w",
				projection, r.StreamSequence, partition, cursor, ctx.Err())
		case <-time.After(wait):
		}
	}
}

// deadLettered returns a *DeadLetteredError for the first open dead letter
// among the order's events up to the command's, nil if there is none. The
// runner writes dead letters in the transaction that moves the cursor past
// them, so once the cursor has moved they are there.
func deadLettered(ctx context.Context, db Querier, schema, projection string, r contract.Result) error {
	e := &DeadLetteredError{Projection: projection, OrderID: r.OrderID, CommandID: r.CommandID}
	var seq int64
	err := db.QueryRow(ctx, `SELECT id, stream_sequence, status, error FROM `+pgx.Identifier{schema, "projection_dead_letters"}.Sanitize()+
		` WHERE projection = $1 AND order_id = $2 AND stream_sequence <= $3 AND status IN ('failed', 'parked')
		ORDER BY stream_sequence LIMIT 1`, projection, r.OrderID, int64(r.StreamSequence)).Scan(&e.ID, &seq, &e.Status, &e.Reason)
	switch {
	case errors.Is(err, pgx.ErrNoRows):
		return nil
	case err != nil:
		return fmt.Errorf("wait for %s: read dead letters of order %s: %w", projection, r.OrderID, err)
	}
	e.Sequence = uint64(seq)
	return e
}
