package readmodel

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"

	"github.com/jetsource/jetsource/contract"
	"github.com/jetsource/jetsource/internal/order"
	"github.com/jetsource/jetsource/internal/projections"
)

// OrderSummary keeps one row per order (status, totals, lifecycle
// timestamps) in orders and one per product line in order_items.
//
// Apply writes a batch without reading the rows first, in one round trip.
// It folds each order's events of the batch once, with order.Evolve's
// rules. An order the batch creates gets its whole row from the batch. An
// order created earlier gets, in place, the columns its events set; its
// lines get the quantities added and lose the products removed, and its
// total and item count are recounted from its lines (the domain's total:
// the sum of quantity × unit price, one unit price per product).
type OrderSummary struct{}

// Name implements projections.Projection.
func (OrderSummary) Name() string { return NameOrderSummary }

// Tables implements projections.Projection.
func (OrderSummary) Tables() []string { return []string{"orders", "order_items"} }

// summary is what a batch does to one order.
type summary struct {
	// state is the fold of the batch's events: from order.New for an order
	// the batch creates (fresh), else from a state that knows nothing of
	// the order's earlier events and only serves for the columns steps
	// names.
	state order.State
	fresh bool
	// first is the version of the order's first event in the batch: the
	// row must be below it.
	first        int64
	steps        steps
	createdAt    time.Time
	submittedAt  time.Time
	paidAt       time.Time
	shippedAt    time.Time
	deliveredAt  time.Time
	canceledAt   time.Time
	updatedAt    time.Time
	lastSequence int64
	// lines are the batch's changes to the order's lines, in the order the
	// products first appear.
	lines []lineChange
}

// steps records which events a batch holds for an order created earlier,
// and so which columns it sets.
type steps struct {
	created, submitted, paid, shipped, delivered, canceled, items bool
}

// lineChange is what a batch does to one product line: removed drops the
// line the order had; then the adds after the last removal add quantity to
// the line, or make it at the unit price of the first of them.
type lineChange struct {
	product        string
	removed, added bool
	quantity       int64
	unitPriceCents int64
}

// Apply folds the batch per order and writes each changed order and line
// once.
func (OrderSummary) Apply(ctx context.Context, tx projections.Tx, events []contract.Event) error {
	evs, err := parse(events)
	if err != nil {
		return err
	}
	rows := make(map[string]*summary)
	// ids keeps the orders in the order they first appear, so that the
	// writes are deterministic.
	var ids []string
	for _, e := range evs {
		s := rows[e.AggregateID]
		if s == nil {
			s = &summary{fresh: e.Version == 1, first: e.Version, state: order.State{ID: e.AggregateID}}
			if s.fresh {
				s.state = order.New(e.AggregateID)
			}
			rows[e.AggregateID] = s
			ids = append(ids, e.AggregateID)
		} else if e.Version <= s.state.Version {
			// A gap is allowed: an operator may have skipped a
			// dead-lettered event. A repeat or a step back is not.
			return fmt.Errorf("%w: %s event %s of order %s has version %d after version %d",
				ErrUnexpectedEvent, e.Type, e.ID, e.AggregateID, e.Version, s.state.Version)
		}
		s.apply(e)
	}
	return writeSummaries(ctx, tx, ids, rows)
}

func (s *summary) apply(e parsed) {
	s.state.Apply(e.data)
	switch d := e.data.(type) {
	case order.OrderCreated:
		s.createdAt, s.steps.created = e.at, true
	case order.ItemAdded:
		l := s.line(d.ProductID)
		if !l.added {
			l.added, l.unitPriceCents = true, d.UnitPriceCents
		}
		l.quantity += d.Quantity
		s.steps.items = true
	case order.ItemRemoved:
		l := s.line(d.ProductID)
		l.removed, l.added, l.quantity = true, false, 0
		s.steps.items = true
	case order.OrderSubmitted:
		s.submittedAt, s.steps.submitted = e.at, true
	case order.OrderPaid:
		s.paidAt, s.steps.paid = e.at, true
	case order.OrderShipped:
		s.shippedAt, s.steps.shipped = e.at, true
	case order.OrderDelivered:
		s.deliveredAt, s.steps.delivered = e.at, true
	case order.OrderCanceled:
		s.canceledAt, s.steps.canceled = e.at, true
	}
	s.state.Version = e.Version
	s.updatedAt, s.lastSequence = e.at, int64(e.Sequence)
}

func (s *summary) line(product string) *lineChange {
	for i := range s.lines {
		if s.lines[i].product == product {
			return &s.lines[i]
		}
	}
	s.lines = append(s.lines, lineChange{product: product})
	return &s.lines[len(s.lines)-1]
}

// writeSummaries queues, in one batch: the rows of the orders the batch
// creates; the lines removed from earlier orders; the lines added to; and
// the updates of the earlier orders, which must each find their row below
// the batch's first version.
func writeSummaries(ctx context.Context, tx projections.Tx, ids []string, rows map[string]*summary) error {
	var (
		fresh     freshOrders
		earlier   earlierOrders
		delOrder  []string
		delProd   []string
		upOrder   []string
		upProd    []string
		upQty     []int64
		upPrice   []int64
		unmatched = map[string]*summary{} // earlier orders whose update found no row yet
	)
	for _, id := range ids {
		s := rows[id]
		if s.fresh {
			fresh.add(s)
		} else {
			earlier.add(s)
			unmatched[id] = s
		}
		for _, l := range s.lines {
			if l.removed && !s.fresh {
				delOrder, delProd = append(delOrder, id), append(delProd, l.product)
			}
			if l.added {
				upOrder, upProd = append(upOrder, id), append(upProd, l.product)
				upQty, upPrice = append(upQty, l.quantity), append(upPrice, l.unitPriceCents)
			}
		}
	}
	b := &pgx.Batch{}
	if len(fresh.id) > 0 {
		fresh.queue(b)
	}
	if len(delOrder) > 0 {
		b.Queue(`DELETE FROM order_items i USING unnest($1::text[], $2::text[]) AS d(order_id, product_id)
			WHERE i.order_id = d.order_id AND i.product_id = d.product_id`, delOrder, delProd)
	}
	if len(upOrder) > 0 {
		b.Queue(`INSERT INTO order_items (order_id, product_id, quantity, unit_price_cents)
			SELECT * FROM unnest($1::text[], $2::text[], $3::bigint[], $4::bigint[])
			ON CONFLICT (order_id, product_id) DO UPDATE SET quantity = order_items.quantity + EXCLUDED.quantity`,
			upOrder, upProd, upQty, upPrice)
	}
	if len(earlier.id) > 0 {
		earlier.queue(b).Query(func(r pgx.Rows) error {
			var id string
			_, err := pgx.ForEachRow(r, []any{&id}, func() error { delete(unmatched, id); return nil })
			return err
		})
	}
	err := tx.SendBatch(ctx, b).Close()
	if pgErr := (*pgconn.PgError)(nil); errors.As(err, &pgErr) && pgErr.Code == "23505" && pgErr.TableName == "orders" {
		return fmt.Errorf("%w: the batch creates an order that has a row already (%s)", ErrUnexpectedEvent, pgErr.Detail)
	}
	if err != nil {
		return fmt.Errorf("write orders: %w", err)
	}
	for _, id := range earlier.id {
		if s := unmatched[id]; s != nil {
			return fmt.Errorf("%w: event of order %s at version %d, which has no row below that version (never created, or projected already)",
				ErrUnexpectedEvent, id, s.first)
		}
	}
	return nil
}

// freshOrders are the rows of the orders a batch creates, column by column.
type freshOrders struct {
	id, customer, currency, status           []string
	total, version, lastSeq                  []int64
	items                                    []int32
	paymentID, method, tracking, carrier, rs []*string
	paid                                     []*int64
	created, updated                         []time.Time
	submitted, paidAt, shipped, delivered    []*time.Time
	canceled                                 []*time.Time
}

func (f *freshOrders) add(s *summary) {
	st := s.state
	f.id, f.customer, f.currency = append(f.id, st.ID), append(f.customer, st.CustomerID), append(f.currency, st.Currency)
	f.status, f.total, f.items = append(f.status, string(st.Status)), append(f.total, st.TotalCents), append(f.items, int32(len(st.Items)))
	f.paymentID, f.method = append(f.paymentID, optional(st.PaymentID)), append(f.method, optional(st.PaymentMethod))
	f.paid = append(f.paid, paidCents(st))
	f.tracking, f.carrier = append(f.tracking, optional(st.TrackingNumber)), append(f.carrier, optional(st.Carrier))
	f.rs = append(f.rs, optional(st.CancelReason))
	f.created, f.submitted, f.paidAt = append(f.created, s.createdAt), append(f.submitted, optional(s.submittedAt)), append(f.paidAt, optional(s.paidAt))
	f.shipped, f.delivered = append(f.shipped, optional(s.shippedAt)), append(f.delivered, optional(s.deliveredAt))
	f.canceled, f.updated = append(f.canceled, optional(s.canceledAt)), append(f.updated, s.updatedAt)
	f.version, f.lastSeq = append(f.version, st.Version), append(f.lastSeq, s.lastSequence)
}

// queue inserts the rows: an order created twice fails on the key.
func (f *freshOrders) queue(b *pgx.Batch) {
	b.Queue(`INSERT INTO orders (id, customer_id, currency, status, total_cents, item_count, payment_id, paid_cents,
		payment_method, tracking_number, carrier, cancel_reason, created_at, submitted_at, paid_at, shipped_at,
		delivered_at, canceled_at, updated_at, version, last_sequence)
		SELECT * FROM unnest($1::text[], $2::text[], $3::text[], $4::text[], $5::bigint[], $6::integer[], $7::text[],
			$8::bigint[], $9::text[], $10::text[], $11::text[], $12::text[], $13::timestamptz[], $14::timestamptz[],
			$15::timestamptz[], $16::timestamptz[], $17::timestamptz[], $18::timestamptz[], $19::timestamptz[],
			$20::bigint[], $21::bigint[])`,
		f.id, f.customer, f.currency, f.status, f.total, f.items, f.paymentID, f.paid, f.method, f.tracking, f.carrier, f.rs,
		f.created, f.submitted, f.paidAt, f.shipped, f.delivered, f.canceled, f.updated, f.version, f.lastSeq)
}

// earlierOrders are the changes to orders created before the batch, column
// by column; each steps flag says whether its columns change.
type earlierOrders struct {
	id                                                            []string
	first, version, lastSeq                                       []int64
	status                                                        []*string
	created, submitted, paid, shipped, delivered, canceled, items []bool
	customer, currency                                            []string
	paymentID, method, tracking, carrier, reason                  []*string
	paidCents                                                     []*int64
	createdAt, updated                                            []time.Time
	submittedAt, paidAt, shippedAt, deliveredAt, canceledAt       []*time.Time
}

func (u *earlierOrders) add(s *summary) {
	st, k := s.state, s.steps
	u.id, u.first, u.version, u.lastSeq = append(u.id, st.ID), append(u.first, s.first), append(u.version, st.Version), append(u.lastSeq, s.lastSequence)
	u.status, u.updated = append(u.status, optional(string(st.Status))), append(u.updated, s.updatedAt)
	u.created, u.customer, u.currency = append(u.created, k.created), append(u.customer, st.CustomerID), append(u.currency, st.Currency)
	u.createdAt = append(u.createdAt, s.createdAt)
	u.submitted, u.submittedAt = append(u.submitted, k.submitted), append(u.submittedAt, optional(s.submittedAt))
	u.paid, u.paymentID, u.paidCents = append(u.paid, k.paid), append(u.paymentID, optional(st.PaymentID)), append(u.paidCents, paidCents(st))
	u.method, u.paidAt = append(u.method, optional(st.PaymentMethod)), append(u.paidAt, optional(s.paidAt))
	u.shipped, u.tracking, u.carrier = append(u.shipped, k.shipped), append(u.tracking, optional(st.TrackingNumber)), append(u.carrier, optional(st.Carrier))
	u.shippedAt = append(u.shippedAt, optional(s.shippedAt))
	u.delivered, u.deliveredAt = append(u.delivered, k.delivered), append(u.deliveredAt, optional(s.deliveredAt))
	u.canceled, u.reason, u.canceledAt = append(u.canceled, k.canceled), append(u.reason, optional(st.CancelReason)), append(u.canceledAt, optional(s.canceledAt))
	u.items = append(u.items, k.items)
}

// queue updates the rows below each order's first version of the batch
// and returns the ids of the rows it updated. Every status but the
// order's earlier one comes from the batch (status is NULL when the batch
// holds no event that sets it). The lines are written before, so the
// recount sees them.
func (u *earlierOrders) queue(b *pgx.Batch) *pgx.QueuedQuery {
	return b.Queue(`UPDATE orders o SET
			status = COALESCE(d.status, o.status),
			customer_id = CASE WHEN d.created THEN d.customer_id ELSE o.customer_id END,
			currency = CASE WHEN d.created THEN d.currency ELSE o.currency END,
			created_at = CASE WHEN d.created THEN d.created_at ELSE o.created_at END,
			submitted_at = CASE WHEN d.submitted THEN d.submitted_at ELSE o.submitted_at END,
			payment_id = CASE WHEN d.paid THEN d.payment_id ELSE o.payment_id END,
			paid_cents = CASE WHEN d.paid THEN d.paid_cents ELSE o.paid_cents END,
			payment_method = CASE WHEN d.paid THEN d.payment_method ELSE o.payment_method END,
			paid_at = CASE WHEN d.paid THEN d.paid_at ELSE o.paid_at END,
			tracking_number = CASE WHEN d.shipped THEN d.tracking_number ELSE o.tracking_number END,
			carrier = CASE WHEN d.shipped THEN d.carrier ELSE o.carrier END,
			shipped_at = CASE WHEN d.shipped THEN d.shipped_at ELSE o.shipped_at END,
			delivered_at = CASE WHEN d.delivered THEN d.delivered_at ELSE o.delivered_at END,
			cancel_reason = CASE WHEN d.canceled THEN d.cancel_reason ELSE o.cancel_reason END,
			canceled_at = CASE WHEN d.canceled THEN d.canceled_at ELSE o.canceled_at END,
			total_cents = CASE WHEN d.items THEN (SELECT COALESCE(sum(i.quantity * i.unit_price_cents), 0)
				FROM order_items i WHERE i.order_id = o.id) ELSE o.total_cents END,
			item_count = CASE WHEN d.items THEN (SELECT count(*) FROM order_items i WHERE i.order_id = o.id) ELSE o.item_count END,
			updated_at = d.updated_at, version = d.version, last_sequence = d.last_sequence
		FROM unnest($1::text[], $2::bigint[], $3::text[], $4::boolean[], $5::text[], $6::text[], $7::timestamptz[],
			$8::boolean[], $9::timestamptz[], $10::boolean[], $11::text[], $12::bigint[], $13::text[], $14::timestamptz[],
			$15::boolean[], $16::text[], $17::text[], $18::timestamptz[], $19::boolean[], $20::timestamptz[],
			$21::boolean[], $22::text[], $23::timestamptz[], $24::boolean[], $25::timestamptz[], $26::bigint[], $27::bigint[])
			AS d(id, first, status, created, customer_id, currency, created_at, submitted, submitted_at, paid, payment_id,
				paid_cents, payment_method, paid_at, shipped, tracking_number, carrier, shipped_at, delivered, delivered_at,
				canceled, cancel_reason, canceled_at, items, updated_at, version, last_sequence)
		WHERE o.id = d.id AND o.version < d.first
		RETURNING o.id`,
		u.id, u.first, u.status, u.created, u.customer, u.currency, u.createdAt, u.submitted, u.submittedAt,
		u.paid, u.paymentID, u.paidCents, u.method, u.paidAt, u.shipped, u.tracking, u.carrier, u.shippedAt,
		u.delivered, u.deliveredAt, u.canceled, u.reason, u.canceledAt, u.items, u.updated, u.version, u.lastSeq)
}

// paidCents is the paid amount of a paid order, NULL before payment.
func paidCents(st order.State) *int64 {
	if st.PaymentID == "" {
		return nil
	}
	return &st.PaidCents
}
