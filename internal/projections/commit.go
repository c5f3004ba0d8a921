package projections

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"

	"github.com/jetsource/jetsource/contract"
)

// deadLetter is a row for projection_dead_letters.
type deadLetter struct {
	item
	status   DeadLetterStatus
	err      string
	attempts int
}

// commit projects items, the events of the partition after from up to and
// including to, and moves the checkpoint from from to to, in one
// transaction. It first applies the batch in one call; if the projection
// fails, it starts over and applies the events one at a time to find the
// culprit.
func (w *worker) commit(ctx context.Context, from, to uint64, items []item, stats *BatchStats) error {
	err := w.commitBatch(ctx, from, to, items, stats)
	if !errors.Is(err, errHandler) {
		return err
	}
	w.log.Warn("batch failed; applying its events one at a time", "partition", w.partition,
		"from", from+1, "to", to, "error", err)
	return w.commitOneByOne(ctx, from, to, items, stats)
}

func (w *worker) commitBatch(ctx context.Context, from, to uint64, items []item, stats *BatchStats) error {
	tx, blocked, err := w.begin(ctx, from)
	if err != nil {
		return err
	}
	defer rollback(ctx, tx)
	var (
		apply   = make([]contract.Event, 0, len(items))
		letters []deadLetter
	)
	for _, it := range items {
		switch {
		case blocked[it.orderID]:
			letters = append(letters, deadLetter{item: it, status: StatusParked})
		case it.err != nil:
			letters = append(letters, deadLetter{item: it, status: StatusFailed, err: it.err.Error(), attempts: 1})
			blocked[it.orderID] = true
		default:
			apply = append(apply, it.event)
		}
	}
	if len(apply) > 0 {
		if err := w.projection.Apply(ctx, statements{tx}, apply); err != nil {
			if ctx.Err() != nil {
				return ctx.Err()
			}
			return fmt.Errorf("%w: %w", errHandler, err)
		}
	}
	return w.finish(ctx, tx, from, to, items, letters, len(apply), stats)
}

// commitOneByOne applies each event in its own savepoint, up to maxAttempts
// times, dead-letters the events that keep failing and parks the later
// events of their orders.
func (w *worker) commitOneByOne(ctx context.Context, from, to uint64, items []item, stats *BatchStats) error {
	tx, blocked, err := w.begin(ctx, from)
	if err != nil {
		return err
	}
	defer rollback(ctx, tx)
	var letters []deadLetter
	applied := 0
	for _, it := range items {
		switch {
		case blocked[it.orderID]:
			letters = append(letters, deadLetter{item: it, status: StatusParked})
			continue
		case it.err != nil:
			letters = append(letters, deadLetter{item: it, status: StatusFailed, err: it.err.Error(), attempts: 1})
			blocked[it.orderID] = true
			continue
		}
		attempts, err := applyOne(ctx, tx, w.projection, it.event, w.maxAttempts)
		if err != nil {
			var failed *applyError
			if !errors.As(err, &failed) {
				return err
			}
			w.log.Error("event dead-lettered", "partition", w.partition, "stream_sequence", it.seq,
				"order_id", it.orderID, "event_id", it.event.ID, "event_type", it.event.Type,
				"command_id", it.event.Metadata.CausationID, "correlation_id", it.event.Metadata.CorrelationID,
				"attempts", attempts, "error", failed.err)
			letters = append(letters, deadLetter{item: it, status: StatusFailed, err: failed.err.Error(), attempts: attempts})
			blocked[it.orderID] = true
			continue
		}
		applied++
	}
	return w.finish(ctx, tx, from, to, items, letters, applied, stats)
}

// applyError is a projection's own failure, as opposed to a broken
// transaction or connection.
type applyError struct{ err error }

func (e *applyError) Error() string { return e.err.Error() }
func (e *applyError) Unwrap() error { return e.err }

// applyOne applies one event in a savepoint, up to attempts times. It
// returns an *applyError if the projection kept failing, and any other
// error if the transaction itself broke.
func applyOne(ctx context.Context, tx pgx.Tx, p Projection, e contract.Event, attempts int) (int, error) {
	var last error
	for n := 1; n <= attempts; n++ {
		sp, err := tx.Begin(ctx)
		if err != nil {
			return n, fmt.Errorf("savepoint: %w", err)
		}
		last = p.Apply(ctx, statements{sp}, []contract.Event{e})
		if last == nil {
			if err := sp.Commit(ctx); err != nil {
				return n, fmt.Errorf("release savepoint: %w", err)
			}
			return n, nil
		}
		if ctx.Err() != nil {
			return n, ctx.Err()
		}
		if err := sp.Rollback(ctx); err != nil {
			return n, fmt.Errorf("roll back to savepoint after %v: %w", last, err)
		}
		if n < attempts {
			select {
			case <-ctx.Done():
				return n, ctx.Err()
			case <-time.After(time.Duration(n) * 20 * time.Millisecond):
			}
		}
	}
	return attempts, &applyError{err: last}
}

// finish writes the dead letters, checks that the partition is still the
// worker's claim, advances the checkpoint (the set of the compare-and-set;
// begin locked the row) and commits.
func (w *worker) finish(ctx context.Context, tx pgx.Tx, from, to uint64, items []item, letters []deadLetter, applied int, stats *BatchStats) error {
	q := w.target.sql
	b := &pgx.Batch{}
	for _, l := range letters {
		queueDeadLetter(b, q.insertDeadLetter, w.target.projection, w.partition, l)
	}
	var lastAt *time.Time
	for i := len(items) - 1; i >= 0; i-- {
		if ts := items[i].event.Metadata.Timestamp.Time; !ts.IsZero() {
			lastAt = &ts
			break
		}
	}
	// The owner row is share-locked from here to the commit: a claim by
	// another runner either came before (the epoch differs, nothing
	// commits) or waits for the commit.
	var epoch int64
	b.Queue(q.ownerShare, w.target.projection, w.partition).QueryRow(func(r pgx.Row) error {
		err := r.Scan(&epoch)
		if errors.Is(err, pgx.ErrNoRows) {
			return nil
		}
		return err
	})
	b.Queue(q.advance, w.target.projection, w.partition, int64(to), lastAt, int64(from), items[len(items)-1].msgID).Exec(func(ct pgconn.CommandTag) error {
		if ct.RowsAffected() != 1 {
			return fmt.Errorf("%w: partition %d left %d", errStale, w.partition, from)
		}
		return nil
	})
	if err := tx.SendBatch(ctx, b).Close(); err != nil {
		return fmt.Errorf("write checkpoint of partition %d: %w", w.partition, err)
	}
	if epoch != w.epoch {
		return fmt.Errorf("%w: partition %d is claimed by epoch %d, not %d", errLostLock, w.partition, epoch, w.epoch)
	}
	if err := tx.Commit(ctx); err != nil {
		return fmt.Errorf("commit batch of partition %d: %w", w.partition, err)
	}
	stats.Events, stats.Applied = len(items), applied
	for _, l := range letters {
		if l.status == StatusParked {
			stats.Parked++
		} else {
			stats.DeadLettered++
		}
	}
	if lastAt != nil {
		stats.LastEventAt = *lastAt
	}
	return nil
}

func queueDeadLetter(b *pgx.Batch, sql, projection string, partition int, l deadLetter) {
	b.Queue(sql, projection, partition, int64(l.seq), l.subject, l.orderID,
		l.event.ID, l.event.Type, l.event.Version, l.body, l.err, l.attempts, string(l.status))
}
