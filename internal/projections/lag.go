package projections

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/nats-io/nats.go/jetstream"

	"github.com/jetsource/jetsource/contract"
)

// PartitionLag is how far one partition of a projection is behind the
// event store.
type PartitionLag struct {
	Projection string
	Partition  int
	// Cursor is the stream sequence of the last event projected.
	Cursor uint64
	// LastEventAt is the metadata timestamp of that event; zero if none.
	LastEventAt time.Time
	// EventsBehind counts the partition's stored events after the cursor.
	EventsBehind uint64
	// SecondsBehind is the age of the oldest event not yet projected, 0
	// when the partition is caught up: it grows while a partition is stuck
	// even if no new events arrive.
	SecondsBehind float64
	// Loss is set when the events stream lacks the event at the cursor
	// (see ErrEventsMissing): the projection has stopped.
	Loss *LossError
}

// Lag reports every partition of a projection. Events behind come from the
// partition's consumer (pending plus delivered but not yet acknowledged);
// for a partition without a consumer, from a short-lived one started at the
// cursor. Seconds behind come from the stored time of the first event after
// the cursor.
func (a *Admin) Lag(ctx context.Context, projection string) ([]PartitionLag, error) {
	cps, err := a.Checkpoints(ctx, projection)
	if err != nil {
		return nil, err
	}
	stream, err := a.js.Stream(ctx, contract.EventsStream)
	if err != nil {
		return nil, fmt.Errorf("lag of %s: look up stream: %w", projection, err)
	}
	now := a.cfg.Now()
	out := make([]PartitionLag, a.cfg.Partitions)
	for p := range out {
		cp := cps[p]
		l := PartitionLag{Projection: projection, Partition: p, Cursor: cp.LastSequence, LastEventAt: cp.LastEventAt}
		if err := checkCursor(ctx, stream, a.js, projection, p, cp.LastSequence, cp.LastEventID); err != nil && !errors.As(err, &l.Loss) {
			return nil, fmt.Errorf("lag of %s: %w", projection, err)
		}
		if l.EventsBehind, err = eventsBehind(ctx, stream, ConsumerName(a.cfg.Schema, projection, p), p, cp.LastSequence); err != nil {
			return nil, fmt.Errorf("lag of %s partition %d: %w", projection, p, err)
		}
		next, err := stream.GetMsg(ctx, cp.LastSequence+1, jetstream.WithGetMsgSubject(contract.EventPartitionFilter(p)))
		switch {
		case errors.Is(err, jetstream.ErrMsgNotFound):
		case err != nil:
			return nil, fmt.Errorf("lag of %s partition %d: first event after the cursor: %w", projection, p, err)
		default:
			l.SecondsBehind = max(now.Sub(next.Time).Seconds(), 0)
			l.EventsBehind = max(l.EventsBehind, 1)
		}
		out[p] = l
	}
	return out, nil
}

func eventsBehind(ctx context.Context, stream jetstream.Stream, consumer string, p int, cursor uint64) (uint64, error) {
	c, err := stream.Consumer(ctx, consumer)
	if err == nil {
		info := c.CachedInfo()
		return info.NumPending + uint64(info.NumAckPending), nil
	}
	if !errors.Is(err, jetstream.ErrConsumerNotFound) {
		return 0, err
	}
	probe, err := stream.CreateConsumer(ctx, jetstream.ConsumerConfig{
		FilterSubject:     contract.EventPartitionFilter(p),
		DeliverPolicy:     jetstream.DeliverByStartSequencePolicy,
		OptStartSeq:       cursor + 1,
		AckPolicy:         jetstream.AckNonePolicy,
		MemoryStorage:     true,
		InactiveThreshold: time.Minute,
	})
	if err != nil {
		return 0, fmt.Errorf("count events after the cursor: %w", err)
	}
	defer stream.DeleteConsumer(context.WithoutCancel(ctx), probe.CachedInfo().Name)
	return probe.CachedInfo().NumPending, nil
}

// Checkpoint is a partition's cursor.
type Checkpoint struct {
	LastSequence uint64
	// LastEventID is the id of the event at LastSequence; empty for a
	// cursor of 0 or one written before ids were recorded.
	LastEventID string
	LastEventAt time.Time
	UpdatedAt   time.Time
}

// Checkpoints returns a projection's cursors by partition; partitions that
// never ran have none.
func (a *Admin) Checkpoints(ctx context.Context, projection string) (map[int]Checkpoint, error) {
	rows, err := a.pool.Query(ctx, `SELECT partition, last_sequence, last_event_id, last_event_at, updated_at
		FROM `+a.schema()+`.projection_checkpoints WHERE projection = $1`, projection)
	if err != nil {
		return nil, fmt.Errorf("read checkpoints of %s: %w", projection, err)
	}
	defer rows.Close()
	out := map[int]Checkpoint{}
	for rows.Next() {
		var (
			p      int
			seq    int64
			lastAt *time.Time
			cp     Checkpoint
		)
		if err := rows.Scan(&p, &seq, &cp.LastEventID, &lastAt, &cp.UpdatedAt); err != nil {
			return nil, fmt.Errorf("read checkpoints of %s: %w", projection, err)
		}
		cp.LastSequence = uint64(seq)
		if lastAt != nil {
			cp.LastEventAt = *lastAt
		}
		out[p] = cp
	}
	if err := rows.Err(); err != nil {
		return nil, fmt.Errorf("read checkpoints of %s: %w", projection, err)
	}
	return out, nil
}
