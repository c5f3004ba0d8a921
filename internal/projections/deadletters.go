package projections

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/jackc/pgx/v5"
)

// DeadLetterStatus is where a dead letter is in its life.
type DeadLetterStatus string

// Dead letter statuses. Failed and parked letters are open: they hold their
// order's later events back.
const (
	// StatusFailed: the event failed the projection MaxAttempts times.
	StatusFailed DeadLetterStatus = "failed"
	// StatusParked: the event waits behind a failed event of its order.
	StatusParked DeadLetterStatus = "parked"
	// StatusRetried: an operator's retry applied the event.
	StatusRetried DeadLetterStatus = "retried"
	// StatusSkipped: an operator dropped the failed event.
	StatusSkipped DeadLetterStatus = "skipped"
	// StatusSuperseded: a rebuild replaced the tables the letter was about.
	StatusSuperseded DeadLetterStatus = "superseded"
)

var (
	// ErrDeadLetterNotFound means no dead letter of the projection has the
	// given id.
	ErrDeadLetterNotFound = errors.New("dead letter not found")
	// ErrNotFailed means the dead letter is not in status failed; only
	// failed letters can be retried or skipped (parked ones follow).
	ErrNotFailed = errors.New("dead letter is not failed")
	// ErrStillFailing means a retried or replayed event failed again; it is
	// the order's failed letter now and the rest stay parked.
	ErrStillFailing = errors.New("event still fails")
)

// DeadLetter is an event a projection could not apply, or one parked
// behind it.
type DeadLetter struct {
	ID             int64
	Projection     string
	Partition      int
	StreamSequence uint64
	Subject        string
	OrderID        string
	EventID        string
	EventType      string
	EventVersion   int64
	Body           []byte
	Error          string
	Attempts       int
	Status         DeadLetterStatus
	CreatedAt      time.Time
	UpdatedAt      time.Time
}

// DeadLetterQuery filters DeadLetters. Zero fields do not filter.
type DeadLetterQuery struct {
	Projection string
	Status     DeadLetterStatus
	OrderID    string
	// AfterID pages: only letters with a greater id.
	AfterID int64
	// Limit is 100 if zero.
	Limit int
}

const deadLetterColumns = `id, projection, partition, stream_sequence, subject, order_id, event_id, event_type,
	event_version, body, error, attempts, status, created_at, updated_at`

func scanDeadLetter(row pgx.CollectableRow) (DeadLetter, error) {
	var (
		l      DeadLetter
		seq    int64
		status string
	)
	err := row.Scan(&l.ID, &l.Projection, &l.Partition, &seq, &l.Subject, &l.OrderID, &l.EventID, &l.EventType,
		&l.EventVersion, &l.Body, &l.Error, &l.Attempts, &status, &l.CreatedAt, &l.UpdatedAt)
	l.StreamSequence, l.Status = uint64(seq), DeadLetterStatus(status)
	return l, err
}

// DeadLetters lists dead letters by id.
func (a *Admin) DeadLetters(ctx context.Context, q DeadLetterQuery) ([]DeadLetter, error) {
	if q.Limit <= 0 {
		q.Limit = 100
	}
	rows, err := a.pool.Query(ctx, `SELECT `+deadLetterColumns+` FROM `+a.schema()+`.projection_dead_letters
		WHERE ($1 = '' OR projection = $1) AND ($2 = '' OR status = $2) AND ($3 = '' OR order_id = $3) AND id > $4
		ORDER BY id LIMIT $5`, q.Projection, string(q.Status), q.OrderID, q.AfterID, q.Limit)
	if err != nil {
		return nil, fmt.Errorf("list dead letters: %w", err)
	}
	letters, err := pgx.CollectRows(rows, scanDeadLetter)
	if err != nil {
		return nil, fmt.Errorf("list dead letters: %w", err)
	}
	return letters, nil
}

// Resolution is what a Retry or Skip did.
type Resolution struct {
	// Applied counts the events applied: the retried one and the parked
	// ones replayed after it.
	Applied int
	// Parked counts the order's events still parked.
	Parked int
	// Failed is the id of the order's failed letter if an event failed
	// again; 0 if the order is unblocked.
	Failed int64
}

// Retry applies a failed event again and then replays the events of its
// order parked behind it, in stream order, each in a savepoint. It stops at
// the first event that fails, which becomes the failed letter, and returns
// ErrStillFailing; what was applied before it stays applied.
func (a *Admin) Retry(ctx context.Context, p Projection, deadLetterID int64) (Resolution, error) {
	return a.resolve(ctx, p, deadLetterID, true)
}

// Skip drops a failed event (the read model never sees it) and replays the
// events of its order parked behind it, like Retry.
func (a *Admin) Skip(ctx context.Context, p Projection, deadLetterID int64) (Resolution, error) {
	return a.resolve(ctx, p, deadLetterID, false)
}

func (a *Admin) resolve(ctx context.Context, p Projection, id int64, retry bool) (Resolution, error) {
	if err := checkProjection(p); err != nil {
		return Resolution{}, err
	}
	tx, err := a.pool.Begin(ctx)
	if err != nil {
		return Resolution{}, fmt.Errorf("resolve dead letter %d: %w", id, err)
	}
	defer rollback(ctx, tx)
	orderID, letters, err := a.lockOrderLetters(ctx, tx, p, id)
	if err != nil {
		return Resolution{}, err
	}
	res, failed, failure, err := a.replay(ctx, tx, p, letters, retry)
	if err != nil {
		return Resolution{}, fmt.Errorf("resolve dead letter %d: %w", id, err)
	}
	if err := tx.Commit(ctx); err != nil {
		return Resolution{}, fmt.Errorf("resolve dead letter %d: %w", id, err)
	}
	if failure != nil {
		return res, fmt.Errorf("%w: dead letter %d, event at sequence %d of order %s: %v",
			ErrStillFailing, failed.ID, failed.StreamSequence, orderID, failure)
	}
	a.cfg.Logger.Info("dead letter resolved", "projection", p.Name(), "id", id, "retry", retry,
		"order", orderID, "applied", res.Applied)
	return res, nil
}

// lockOrderLetters locks the partition of dead letter id and returns its
// order and the order's open letters, failed one first, locked; id must
// be that failed letter. It points the transaction's search_path at the
// projection's tables.
func (a *Admin) lockOrderLetters(ctx context.Context, tx pgx.Tx, p Projection, id int64) (string, []DeadLetter, error) {
	t := newTarget(a.cfg.Schema, p.Name())
	dl := a.schema() + ".projection_dead_letters"
	var (
		partition int
		orderID   string
	)
	err := tx.QueryRow(ctx, `SELECT partition, order_id FROM `+dl+` WHERE id = $1 AND projection = $2`, id, p.Name()).
		Scan(&partition, &orderID)
	if errors.Is(err, pgx.ErrNoRows) {
		return "", nil, fmt.Errorf("%w: %d of %s", ErrDeadLetterNotFound, id, p.Name())
	}
	if err != nil {
		return "", nil, fmt.Errorf("resolve dead letter %d: %w", id, err)
	}
	// The checkpoint row lock orders this after the partition's batch in
	// flight, and the runner's next batch after this: it then sees the
	// order unblocked, and no event of the order can slip in between.
	if _, err := tx.Exec(ctx, t.sql.lockCheckpoint, p.Name(), partition); err != nil {
		return "", nil, fmt.Errorf("resolve dead letter %d: lock partition %d: %w", id, partition, err)
	}
	rows, err := tx.Query(ctx, `SELECT `+deadLetterColumns+` FROM `+dl+`
		WHERE projection = $1 AND order_id = $2 AND status IN ('failed', 'parked')
		ORDER BY stream_sequence FOR UPDATE`, p.Name(), orderID)
	if err != nil {
		return "", nil, fmt.Errorf("resolve dead letter %d: %w", id, err)
	}
	letters, err := pgx.CollectRows(rows, scanDeadLetter)
	if err != nil {
		return "", nil, fmt.Errorf("resolve dead letter %d: %w", id, err)
	}
	if len(letters) == 0 || letters[0].ID != id || letters[0].Status != StatusFailed {
		return "", nil, fmt.Errorf("%w: %d", ErrNotFailed, id)
	}
	if _, err := tx.Exec(ctx, "SELECT set_config('search_path', $1, true)", t.sql.searchPath); err != nil {
		return "", nil, fmt.Errorf("resolve dead letter %d: %w", id, err)
	}
	return orderID, letters, nil
}

// replay skips (retry false) or applies the failed letter, then applies
// the parked ones in order, each in a savepoint, and records each letter's
// new status. It stops at the first event that fails again: that letter
// is failed (with the projection's error, failure) and the rest stay
// parked. err is a broken transaction.
func (a *Admin) replay(ctx context.Context, tx pgx.Tx, p Projection, letters []DeadLetter, retry bool) (res Resolution, failed DeadLetter, failure, err error) {
	setStatus := func(l DeadLetter, status DeadLetterStatus, attempts int, msg string) error {
		_, err := tx.Exec(ctx, `UPDATE `+a.schema()+`.projection_dead_letters SET status = $2, attempts = $3, error = $4, updated_at = now() WHERE id = $1`,
			l.ID, string(status), attempts, msg)
		return err
	}
	for i, l := range letters {
		if i == 0 && !retry {
			if err := setStatus(l, StatusSkipped, l.Attempts, l.Error); err != nil {
				return res, l, nil, fmt.Errorf("skip: %w", err)
			}
			continue
		}
		it := decodeItem(l.Subject, l.StreamSequence, l.Body)
		failure := it.err
		if failure == nil {
			_, err := applyOne(ctx, tx, p, it.event, 1)
			var applyErr *applyError
			switch {
			case errors.As(err, &applyErr):
				failure = applyErr.err
			case err != nil:
				return res, l, nil, fmt.Errorf("apply event at %d: %w", l.StreamSequence, err)
			}
		}
		if failure != nil {
			res.Failed, res.Parked = l.ID, len(letters)-i-1
			return res, l, failure, setStatus(l, StatusFailed, l.Attempts+1, failure.Error())
		}
		if err := setStatus(l, StatusRetried, l.Attempts+1, l.Error); err != nil {
			return res, l, nil, err
		}
		res.Applied++
	}
	return res, DeadLetter{}, nil, nil
}

func (a *Admin) schema() string { return pgx.Identifier{a.cfg.Schema}.Sanitize() }
