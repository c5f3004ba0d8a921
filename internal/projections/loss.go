package projections

import (
	"context"
	"errors"
	"fmt"

	"github.com/jackc/pgx/v5"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/jetsource/jetsource/contract"
	"github.com/jetsource/jetsource/internal/es"
)

// ErrEventsMissing means the events stream no longer holds an event a
// projection has projected: it ends below the projection's cursor, or holds
// another event there (a lost tail, a restored older backup, a recreated
// stream). Projecting on would skip whatever the stream lost, or mix two
// histories, so the projection stops until an operator rebuilds it.
var ErrEventsMissing = errors.New("the events stream lost events the projection has projected")

// LossError is ErrEventsMissing for one partition, with both numbers.
type LossError struct {
	Projection string
	Partition  int
	// Cursor is the stream sequence of the last event the partition
	// projected, EventID that event's id (empty if unknown).
	Cursor  uint64
	EventID string
	// StreamLast is the events stream's last sequence when the loss was
	// found.
	StreamLast uint64
}

func (e *LossError) Error() string {
	return fmt.Sprintf("%s: partition %d projected up to stream sequence %d (event %q), but the events stream "+
		"ends at %d or holds another event there: events are missing (a lost tail, a restored older backup or a "+
		"recreated stream); the projection stopped; rebuild it from the stream (orderctl rebuild %s)",
		e.Projection, e.Partition, e.Cursor, e.EventID, e.StreamLast, e.Projection)
}

func (e *LossError) Unwrap() error { return ErrEventsMissing }

// checkCursor reports a *LossError if the events stream does not hold, at
// the partition's cursor, the event the projection last projected there.
// A direct get may be answered by a replica that is behind, so only the
// stream leader's answer counts as a loss.
func checkCursor(ctx context.Context, stream jetstream.Stream, js jetstream.JetStream, projection string, partition int, cursor uint64, eventID string) error {
	if cursor == 0 {
		return nil
	}
	// A cursor written before event ids were recorded is checked by its
	// sequence alone.
	holds := func(m *jetstream.RawStreamMsg) bool {
		return eventID == "" || m.Header.Get(jetstream.MsgIDHeader) == eventID
	}
	if m, err := stream.GetMsg(ctx, cursor); err == nil && holds(m) {
		return nil
	}
	m, err := es.LeaderMsg(ctx, js, contract.EventsStream, cursor)
	switch {
	case errors.Is(err, jetstream.ErrMsgNotFound):
	case err != nil:
		return fmt.Errorf("check the event at the cursor of partition %d: %w", partition, err)
	case holds(m):
		return nil
	}
	info, err := stream.Info(ctx)
	if err != nil {
		return fmt.Errorf("check the event at the cursor of partition %d: %w", partition, err)
	}
	return &LossError{Projection: projection, Partition: partition, Cursor: cursor, EventID: eventID, StreamLast: info.State.LastSeq}
}

// checkLoss checks every partition's cursor against the events stream and
// reports whether events are missing; it logs when that changes. If the
// check itself fails, the last verdict stands.
func (o *owner) checkLoss(ctx context.Context) bool {
	loss, err := o.findLoss(ctx)
	if err != nil {
		o.cfg.Logger.Warn("cannot check the cursors against the events stream", "error", err)
		return o.loss.Load() != nil
	}
	switch prev := o.loss.Swap(loss); {
	case loss != nil && prev == nil:
		o.cfg.Logger.Error("events the projection projected are missing from the events stream; projection stopped",
			"projection", loss.Projection, "partition", loss.Partition, "cursor", loss.Cursor, "event_id", loss.EventID,
			"stream_last_sequence", loss.StreamLast, "error", loss)
	case loss == nil && prev != nil:
		o.cfg.Logger.Info("the events stream holds the projection's cursors again; projecting", "projection", o.target.projection)
	}
	return loss != nil
}

// findLoss returns the first partition whose cursor's event the stream
// lacks, or nil. The cursors are read before the stream is, so a cursor
// that moves meanwhile is never ahead of what the stream shows.
func (o *owner) findLoss(ctx context.Context) (*LossError, error) {
	rows, err := o.pool.Query(ctx, `SELECT partition, last_sequence, last_event_id FROM `+o.target.sql.searchPath+
		`.projection_checkpoints WHERE projection = $1 AND last_sequence > 0 ORDER BY partition`, o.target.projection)
	if err != nil {
		return nil, err
	}
	type cursor struct {
		partition int
		seq       int64
		id        string
	}
	var cursors []cursor
	var c cursor
	if _, err := pgx.ForEachRow(rows, []any{&c.partition, &c.seq, &c.id}, func() error {
		cursors = append(cursors, c)
		return nil
	}); err != nil {
		return nil, err
	}
	if len(cursors) == 0 {
		return nil, nil
	}
	stream, err := o.js.Stream(ctx, contract.EventsStream)
	if err != nil {
		return nil, err
	}
	for _, c := range cursors {
		err := checkCursor(ctx, stream, o.js, o.target.projection, c.partition, uint64(c.seq), c.id)
		var loss *LossError
		if errors.As(err, &loss) {
			return loss, nil
		}
		if err != nil {
			return nil, err
		}
	}
	return nil, nil
}

// halt stops every partition at once, abandoning the batches in flight,
// and unlocks them: nothing may be projected on top of a loss.
func (o *owner) halt(ctx context.Context) {
	for _, run := range o.held {
		run.kill()
		run.stop()
	}
	ps := make([]int, 0, len(o.held))
	for p, run := range o.held {
		<-run.done
		ps = append(ps, p)
	}
	for _, p := range ps {
		delete(o.held, p)
		o.unlock(ctx, p)
	}
}
