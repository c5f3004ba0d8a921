package projections

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"
	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/codes"
	"go.opentelemetry.io/otel/trace"

	"github.com/jetsource/jetsource/contract"
	"github.com/jetsource/jetsource/internal/backoff"
	"github.com/jetsource/jetsource/internal/es"
	"github.com/jetsource/jetsource/internal/tracing"
)

var (
	// errStale means the partition's checkpoint is not where this worker
	// left it: another replica or a rebuild swap moved it. The worker
	// reloads it and starts over from there.
	errStale = errors.New("checkpoint moved by another writer")
	// errLostLock means the partition's owner epoch is no longer the
	// worker's: another runner claimed the partition. The worker must stop
	// at once and leave the consumer alone.
	errLostLock = errors.New("partition lock lost")
	// errDelivery means the consumer's deliveries were not the contiguous
	// run this worker expects (a redelivery, or another process pulling
	// from the same consumer); the worker resets the consumer and restarts.
	errDelivery = errors.New("deliveries out of sequence")
	// errHandler marks a failed Apply of a whole batch.
	errHandler = errors.New("projection failed")
)

// workerConfig is what a partition worker needs beyond its partition.
type workerConfig struct {
	pool         *pgxpool.Pool
	js           jetstream.JetStream
	projection   Projection
	target       target
	consumerName func(partition int) string
	// inactive deletes an abandoned consumer after this long; 0 keeps it.
	inactive time.Duration
	// memory keeps the consumer's state in memory, sparing the server a
	// write of it after deliveries and acks: for consumers that need not
	// outlive a server restart (a worker recreates its consumer at every
	// start anyway, from the cursor in Postgres).
	memory      bool
	batchSize   int
	batchWait   time.Duration
	maxAttempts int
	ackWait     time.Duration
	log         *slog.Logger
	tracer      trace.Tracer
	// committed is called after each committed batch; may be nil.
	committed func(BatchStats)
	// started is called once the consumer points at the event after the
	// cursor; may be nil.
	started func(partition int)
}

// worker projects one partition for as long as its replica owns it.
type worker struct {
	workerConfig
	partition int
	// epoch is the owner epoch of the claim the worker runs under (see
	// migration 0005): it commits only while the partition's owner row
	// holds it.
	epoch int64
}

// item is one delivered event past the cursor.
type item struct {
	seq     uint64
	subject string
	orderID string
	body    []byte
	event   contract.Event
	// err says why the event cannot be decoded; it is dead-lettered
	// without being applied.
	err error
	// msgID is the message's Nats-Msg-Id, the event id even when the body
	// cannot be read; the checkpoint records it (see checkCursor).
	msgID string
}

// run consumes the partition until stop is canceled (it finishes the batch
// in hand first) or kill is (it abandons it). It returns errLostLock if the
// replica lost the partition, and a *LossError if the events stream lacks
// events the partition projected; on anything else it restarts the partition
// from its cursor, at once the first time and then with a growing pause,
// so a restart loop cannot hammer NATS and Postgres.
func (w *worker) run(stop, kill context.Context) error {
	pauses := backoff.New(100*time.Millisecond, 5*time.Second)
	first := true // restart at once the first time
	for {
		began := time.Now()
		err := w.session(stop, kill)
		if time.Since(began) > time.Minute {
			pauses.Reset()
			first = true
		}
		var delay time.Duration
		if !first {
			delay = pauses.Pause()
		}
		first = false
		switch {
		case stop.Err() != nil || kill.Err() != nil:
			return nil
		case errors.Is(err, errLostLock), errors.Is(err, ErrEventsMissing):
			return err
		case errors.Is(err, errStale), errors.Is(err, errDelivery):
			w.log.Info("restarting partition from its checkpoint", "partition", w.partition, "reason", err, "after", delay)
		default:
			w.log.Warn("partition failed; restarting from its checkpoint", "partition", w.partition, "error", err, "after", delay)
		}
		if !backoff.Sleep(stop, delay) {
			return nil
		}
	}
}

// session loads the cursor, points the consumer at the event after it and
// projects batches until stop, or until something forces a restart.
func (w *worker) session(stop, kill context.Context) error {
	c, err := w.openConsumer(kill)
	if err != nil {
		return err
	}
	defer c.msgs.Stop()
	if w.started != nil {
		w.started(w.partition)
	}
	for {
		batch, err := w.receive(stop, c)
		if err != nil || len(batch) == 0 {
			return err
		}
		if err := w.project(kill, c, batch); err != nil {
			return err
		}
		if stop.Err() != nil {
			return nil
		}
	}
}

// sessionConsumer is a session's consumer and where its deliveries are.
type sessionConsumer struct {
	cons jetstream.Consumer
	msgs jetstream.MessagesContext
	// cursor is the partition's checkpoint, moved by each committed batch.
	cursor uint64
	// next is the consumer sequence the next delivery must have, last the
	// stream sequence of the last delivery.
	next, last uint64
}

// openConsumer loads the cursor, checks the claim and that the stream
// still holds the event at the cursor, and creates the partition's
// consumer reset to cursor+1.
func (w *worker) openConsumer(kill context.Context) (*sessionConsumer, error) {
	cursor, eventID, err := w.loadCursor(kill)
	if err != nil {
		return nil, err
	}
	if err := w.checkOwner(kill); err != nil {
		return nil, err
	}
	stream, err := w.js.Stream(kill, contract.EventsStream)
	if err != nil {
		return nil, fmt.Errorf("look up stream %s: %w", contract.EventsStream, err)
	}
	// Consuming from cursor+1 of a stream that lost events would skip them.
	if err := checkCursor(kill, stream, w.js, w.target.projection, w.partition, cursor, eventID); err != nil {
		return nil, err
	}
	name := w.consumerName(w.partition)
	cons, err := stream.CreateOrUpdateConsumer(kill, jetstream.ConsumerConfig{
		Durable:       name,
		Description:   "projection " + w.target.projection + " in schema " + w.target.schema,
		FilterSubject: contract.EventPartitionFilter(w.partition),
		// DeliverAll allows a reset to any sequence, also below the
		// cursor a rebuild swap left behind.
		DeliverPolicy:     jetstream.DeliverAllPolicy,
		AckPolicy:         jetstream.AckAllPolicy,
		AckWait:           w.ackWait,
		MaxDeliver:        -1,
		MaxAckPending:     max(4*w.batchSize, 1000),
		InactiveThreshold: w.inactive,
		MemoryStorage:     w.memory,
	})
	if err != nil {
		return nil, fmt.Errorf("create consumer %s: %w", name, err)
	}
	reset, err := stream.ResetConsumerToSequence(kill, name, cursor+1)
	if err != nil {
		return nil, fmt.Errorf("reset consumer %s to %d: %w", name, cursor+1, err)
	}
	msgs, err := cons.Messages(jetstream.PullMaxMessages(2 * w.batchSize))
	if err != nil {
		return nil, fmt.Errorf("consume %s: %w", name, err)
	}
	// After the reset the consumer numbers deliveries from
	// reset.Delivered.Consumer+1. Any other number means a delivery went
	// elsewhere, and the run of events this worker sees has a hole.
	return &sessionConsumer{cons: cons, msgs: msgs, cursor: cursor, next: reset.Delivered.Consumer + 1, last: cursor}, nil
}

// project commits the batch's events past the cursor together with the
// cursor, acknowledges the batch and reports it.
func (w *worker) project(kill context.Context, c *sessionConsumer, batch []jetstream.Msg) error {
	start := time.Now()
	items := make([]item, 0, len(batch))
	var pending uint64
	for _, m := range batch {
		md, err := m.Metadata()
		if err != nil {
			return fmt.Errorf("%w: %v", errDelivery, err)
		}
		if md.Sequence.Consumer != c.next || md.Sequence.Stream <= c.last {
			return fmt.Errorf("%w: delivery %d of stream sequence %d after delivery %d of %d",
				errDelivery, md.Sequence.Consumer, md.Sequence.Stream, c.next-1, c.last)
		}
		c.next, c.last, pending = c.next+1, md.Sequence.Stream, md.NumPending
		if md.Sequence.Stream > c.cursor {
			items = append(items, w.decode(m, md.Sequence.Stream))
		}
	}
	stats := BatchStats{Projection: w.target.projection, Partition: w.partition, Pending: pending, From: c.cursor, Cursor: c.cursor}
	if len(items) > 0 {
		to := items[len(items)-1].seq
		spans := w.startSpans(batch, items)
		err := w.commit(kill, c.cursor, to, items, &stats)
		endSpans(spans, err)
		if err != nil {
			return err
		}
		c.cursor, stats.Cursor = to, to
	}
	// AckAll: one ack covers the batch, including skipped events. A lost
	// ack only causes a redelivery, which the cursor skips.
	if err := batch[len(batch)-1].Ack(); err != nil {
		w.log.Debug("ack failed", "partition", w.partition, "error", err)
	}
	stats.Duration = time.Since(start)
	if w.committed != nil && stats.Events > 0 {
		w.committed(stats)
	}
	return nil
}

// startSpans continues the trace of every event of the batch that carries
// one, with a span that ends when the batch is committed or abandoned.
// Without a traceparent header there is nothing to continue.
func (w *worker) startSpans(batch []jetstream.Msg, items []item) []trace.Span {
	var spans []trace.Span
	first := len(batch) - len(items) // the batch's events at or below the cursor are not projected
	for i, m := range batch[first:] {
		h := m.Headers()
		if h.Get("traceparent") == "" {
			continue
		}
		_, span := w.tracer.Start(tracing.Extract(context.Background(), nats.Header(h)), "project "+items[i].event.Type,
			trace.WithSpanKind(trace.SpanKindConsumer),
			trace.WithAttributes(attribute.String("jetsource.projection", w.target.projection),
				attribute.String("jetsource.order_id", items[i].orderID),
				attribute.Int64("messaging.jetstream.stream_sequence", int64(items[i].seq))))
		spans = append(spans, span)
	}
	return spans
}

func endSpans(spans []trace.Span, err error) {
	for _, s := range spans {
		if err != nil {
			s.RecordError(err)
			s.SetStatus(codes.Error, "batch not committed")
		}
		s.End()
	}
}

// idleCheck is how long a worker waits for an event before it asks the
// consumer whether events are pending that it should have received.
const idleCheck = 2 * time.Second

// receive waits for a first event, then takes what else arrives within
// batchWait, up to batchSize events. It returns nothing when stop is
// canceled. While idle it runs checkIdle every idleCheck.
func (w *worker) receive(stop context.Context, c *sessionConsumer) ([]jetstream.Msg, error) {
	var first jetstream.Msg
	for first == nil {
		idle, cancel := context.WithTimeout(stop, idleCheck)
		m, err := c.msgs.Next(jetstream.NextContext(idle))
		cancel()
		switch {
		case err == nil:
			first = m
		case stop.Err() != nil:
			return nil, nil
		case idle.Err() == nil:
			return nil, fmt.Errorf("receive events: %w", err)
		default:
			if err := w.checkIdle(stop, c); err != nil {
				return nil, err
			}
		}
	}
	batch := make([]jetstream.Msg, 1, w.batchSize)
	batch[0] = first
	window, cancel := context.WithTimeout(stop, w.batchWait)
	defer cancel()
	for len(batch) < w.batchSize {
		m, err := c.msgs.Next(jetstream.NextContext(window))
		if err != nil {
			if window.Err() != nil {
				break
			}
			return nil, fmt.Errorf("receive events: %w", err)
		}
		batch = append(batch, m)
	}
	return batch, nil
}

// checkIdle finds what a worker receiving nothing cannot see otherwise.
// Events pending or delivered but not acknowledged, while none arrive
// here, mean that another process (a replica that lost the partition and
// has not noticed yet) pulled them, and the consumer must be reset. A
// checkpoint that is no longer where this worker left it means another
// writer moved it (a rebuild swap, which may set it below what this worker
// projected into the old tables, or an operator): the events after it must
// be projected again although no new event will arrive to reveal it.
func (w *worker) checkIdle(ctx context.Context, c *sessionConsumer) error {
	info, err := c.cons.Info(ctx)
	if err != nil {
		return fmt.Errorf("check consumer: %w", err)
	}
	if info.NumPending > 0 || info.NumAckPending > 0 {
		return fmt.Errorf("%w: %d events pending and %d unacknowledged, none received",
			errDelivery, info.NumPending, info.NumAckPending)
	}
	var (
		cursor int64
		id     string
	)
	if err := w.pool.QueryRow(ctx, w.target.sql.readCheckpoint, w.target.projection, w.partition).Scan(&cursor, &id); err != nil {
		return fmt.Errorf("check checkpoint of partition %d: %w", w.partition, err)
	}
	if uint64(cursor) != c.cursor {
		return fmt.Errorf("%w: partition %d is at %d, not %d", errStale, w.partition, cursor, c.cursor)
	}
	return nil
}

// decode reads an event; what cannot be read is kept for the dead letters.
func (w *worker) decode(m jetstream.Msg, seq uint64) item {
	it := decodeItem(m.Subject(), seq, m.Data())
	it.msgID = m.Headers().Get(jetstream.MsgIDHeader)
	return it
}

// decodeItem reads a stored event. An event that cannot be read gets err
// set, and the order of its subject, so that it can be dead-lettered and
// its order's later events parked behind it.
func decodeItem(subject string, seq uint64, body []byte) item {
	it := item{seq: seq, subject: subject, body: body}
	_, orderID, ok := contract.ParseEventSubject(subject)
	if !ok {
		it.orderID = subject
		it.err = fmt.Errorf("%w: subject %q is not an order's event subject", es.ErrCorrupt, subject)
		return it
	}
	it.orderID = orderID
	e, err := contract.DecodeEvent(subject, seq, body)
	if err != nil {
		it.err = fmt.Errorf("%w: %v", es.ErrCorrupt, err)
		return it
	}
	it.event = e
	if e.AggregateID != orderID {
		it.err = fmt.Errorf("%w: event %s of %q stored on the subject of %q", es.ErrCorrupt, e.ID, e.AggregateID, orderID)
		return it
	}
	if it.event, err = contract.Upcast(e); err != nil {
		it.event, it.err = e, err
	}
	return it
}

// loadCursor returns the partition's cursor and the id of the event there.
func (w *worker) loadCursor(ctx context.Context) (uint64, string, error) {
	q := w.target.sql
	if _, err := w.pool.Exec(ctx, q.ensureCheckpoint, w.target.projection, w.partition); err != nil {
		return 0, "", fmt.Errorf("create checkpoint of partition %d: %w", w.partition, err)
	}
	var (
		cursor int64
		id     string
	)
	if err := w.pool.QueryRow(ctx, q.readCheckpoint, w.target.projection, w.partition).Scan(&cursor, &id); err != nil {
		return 0, "", fmt.Errorf("read checkpoint of partition %d: %w", w.partition, err)
	}
	return uint64(cursor), id, nil
}

// checkOwner verifies, before the worker touches the shared consumer, that
// no other runner claimed the partition since.
func (w *worker) checkOwner(ctx context.Context) error {
	var epoch int64
	err := w.pool.QueryRow(ctx, w.target.sql.owner, w.target.projection, w.partition).Scan(&epoch)
	if err != nil && !errors.Is(err, pgx.ErrNoRows) {
		return fmt.Errorf("check owner of partition %d: %w", w.partition, err)
	}
	if epoch != w.epoch {
		return fmt.Errorf("%w: partition %d is claimed by epoch %d, not %d", errLostLock, w.partition, epoch, w.epoch)
	}
	return nil
}

// begin opens the batch's transaction in one round trip: it locks the
// checkpoint row and checks it still reads from (the compare of the
// compare-and-set), points search_path at the target and reads the orders
// blocked behind a dead letter. Ownership is checked at the end (finish).
func (w *worker) begin(ctx context.Context, from uint64) (pgx.Tx, map[string]bool, error) {
	q := w.target.sql
	var (
		cur     int64
		found   bool
		blocked = map[string]bool{}
	)
	b := &pgx.Batch{}
	b.BeginTx(pgx.TxOptions{})
	b.Queue(q.lockCheckpoint, w.target.projection, w.partition).QueryRow(func(r pgx.Row) error {
		err := r.Scan(&cur)
		if errors.Is(err, pgx.ErrNoRows) {
			return nil
		}
		found = err == nil
		return err
	})
	b.Queue("SELECT set_config('search_path', $1, true)", q.searchPath)
	b.Queue(q.blockedOrders, w.target.projection, w.partition).Query(func(rows pgx.Rows) error {
		var id string
		_, err := pgx.ForEachRow(rows, []any{&id}, func() error { blocked[id] = true; return nil })
		return err
	})
	br := w.pool.SendBatch(ctx, b)
	tx := br.Tx()
	if err := br.Close(); err != nil {
		rollback(ctx, tx)
		return nil, nil, fmt.Errorf("begin batch of partition %d: %w", w.partition, err)
	}
	if !found || uint64(cur) != from {
		rollback(ctx, tx)
		return nil, nil, fmt.Errorf("%w: partition %d is at %d, not %d", errStale, w.partition, cur, from)
	}
	return tx, blocked, nil
}

func rollback(ctx context.Context, tx pgx.Tx) {
	ctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 5*time.Second)
	defer cancel()
	tx.Rollback(ctx)
}
