package readmodel

import (
	"context"
	"fmt"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/jetsource/jetsource/contract"
	"github.com/jetsource/jetsource/internal/order"
	"github.com/jetsource/jetsource/internal/projections"
)

// OrderSummary keeps one row per order (status, totals, lifecycle
// timestamps) in orders and one per product line in order_items. It folds
// with order.Evolve, so the rows follow the domain's own rules.
type OrderSummary struct{}

// Name implements projections.Projection.
func (OrderSummary) Name() string { return NameOrderSummary }

// Tables implements projections.Projection.
func (OrderSummary) Tables() []string { return []string{"orders", "order_items"} }

// summary is an order's row while a batch is folded.
type summary struct {
	state        order.State
	createdAt    time.Time
	submittedAt  time.Time
	paidAt       time.Time
	shippedAt    time.Time
	deliveredAt  time.Time
	canceledAt   time.Time
	updatedAt    time.Time
	lastSequence int64
	// lines are the products whose line the batch changed.
	lines map[string]bool
}

// Apply loads the rows of the batch's orders, folds every event into them
// in memory and writes each changed order and line once.
func (OrderSummary) Apply(ctx context.Context, tx projections.Tx, events []contract.Event) error {
	evs, err := parse(events)
	if err != nil {
		return err
	}
	rows := make(map[string]*summary)
	// ids keeps the orders in the order they first appear, so that the
	// writes are deterministic. Orders created in the batch are looked up
	// too: a row already there means the creation is a repeat.
	var ids []string
	for _, e := range evs {
		if _, seen := rows[e.AggregateID]; !seen {
			rows[e.AggregateID] = nil
			ids = append(ids, e.AggregateID)
		}
	}
	if err := loadSummaries(ctx, tx, ids, rows); err != nil {
		return err
	}
	for _, e := range evs {
		s := rows[e.AggregateID]
		switch {
		case s == nil && e.Version == 1:
			s = &summary{state: order.New(e.AggregateID)}
			rows[e.AggregateID] = s
		case s == nil:
			return fmt.Errorf("%w: %s event %s version %d of order %s, which has no row",
				ErrUnexpectedEvent, e.Type, e.ID, e.Version, e.AggregateID)
		}
		// A gap is allowed: an operator may have skipped a dead-lettered
		// event. A repeat or a step back is not.
		if e.Version <= s.state.Version {
			return fmt.Errorf("%w: %s event %s of order %s has version %d after version %d",
				ErrUnexpectedEvent, e.Type, e.ID, e.AggregateID, e.Version, s.state.Version)
		}
		s.apply(e)
	}
	return writeSummaries(ctx, tx, ids, rows)
}

func (s *summary) apply(e parsed) {
	s.state = order.Evolve(s.state, e.data)
	switch d := e.data.(type) {
	case order.OrderCreated:
		s.createdAt = e.at
	case order.ItemAdded:
		s.touch(d.ProductID)
	case order.ItemRemoved:
		s.touch(d.ProductID)
	case order.OrderSubmitted:
		s.submittedAt = e.at
	case order.OrderPaid:
		s.paidAt = e.at
	case order.OrderShipped:
		s.shippedAt = e.at
	case order.OrderDelivered:
		s.deliveredAt = e.at
	case order.OrderCanceled:
		s.canceledAt = e.at
	}
	s.state.Version = e.Version
	s.updatedAt, s.lastSequence = e.at, int64(e.Sequence)
}

func (s *summary) touch(productID string) {
	if s.lines == nil {
		s.lines = map[string]bool{}
	}
	s.lines[productID] = true
}

func loadSummaries(ctx context.Context, tx projections.Tx, ids []string, rows map[string]*summary) error {
	b := &pgx.Batch{}
	b.Queue(`SELECT id, customer_id, currency, status, total_cents, payment_id, paid_cents, payment_method,
		tracking_number, carrier, cancel_reason, created_at, submitted_at, paid_at, shipped_at, delivered_at,
		canceled_at, updated_at, version, last_sequence
		FROM orders WHERE id = ANY($1)`, ids).Query(func(r pgx.Rows) error {
		for r.Next() {
			var (
				s                                                  summary
				status                                             string
				paymentID, method, tracking, carrier, cancelReason *string
				paid                                               *int64
				submitted, paidAt, shipped, delivered, canceled    *time.Time
			)
			if err := r.Scan(&s.state.ID, &s.state.CustomerID, &s.state.Currency, &status, &s.state.TotalCents,
				&paymentID, &paid, &method, &tracking, &carrier, &cancelReason, &s.createdAt, &submitted, &paidAt,
				&shipped, &delivered, &canceled, &s.updatedAt, &s.state.Version, &s.lastSequence); err != nil {
				return err
			}
			s.state.Status = order.Status(status)
			s.state.PaymentID, s.state.PaidCents, s.state.PaymentMethod = deref(paymentID), deref(paid), deref(method)
			s.state.TrackingNumber, s.state.Carrier, s.state.CancelReason = deref(tracking), deref(carrier), deref(cancelReason)
			s.submittedAt, s.paidAt, s.shippedAt = deref(submitted), deref(paidAt), deref(shipped)
			s.deliveredAt, s.canceledAt = deref(delivered), deref(canceled)
			rows[s.state.ID] = &s
		}
		return r.Err()
	})
	b.Queue(`SELECT order_id, product_id, quantity, unit_price_cents FROM order_items
		WHERE order_id = ANY($1) ORDER BY order_id, product_id`, ids).Query(func(r pgx.Rows) error {
		for r.Next() {
			var (
				id string
				it order.Item
			)
			if err := r.Scan(&id, &it.ProductID, &it.Quantity, &it.UnitPriceCents); err != nil {
				return err
			}
			if s := rows[id]; s != nil {
				s.state.Items = append(s.state.Items, it)
			}
		}
		return r.Err()
	})
	if err := tx.SendBatch(ctx, b).Close(); err != nil {
		return fmt.Errorf("load orders: %w", err)
	}
	return nil
}

func writeSummaries(ctx context.Context, tx projections.Tx, ids []string, rows map[string]*summary) error {
	n := len(ids)
	var (
		id, customer, currency, status           = make([]string, n), make([]string, n), make([]string, n), make([]string, n)
		total, version, lastSeq                  = make([]int64, n), make([]int64, n), make([]int64, n)
		items                                    = make([]int32, n)
		paymentID, method, tracking, carrier, rs = make([]*string, n), make([]*string, n), make([]*string, n), make([]*string, n), make([]*string, n)
		paid                                     = make([]*int64, n)
		created, updated                         = make([]time.Time, n), make([]time.Time, n)
		submitted, paidAt, shipped, delivered    = make([]*time.Time, n), make([]*time.Time, n), make([]*time.Time, n), make([]*time.Time, n)
		canceled                                 = make([]*time.Time, n)
		delOrder, delProduct                     []string
		upOrder, upProduct                       []string
		upQty, upPrice                           []int64
	)
	for i, oid := range ids {
		s := rows[oid]
		st := s.state
		id[i], customer[i], currency[i], status[i] = st.ID, st.CustomerID, st.Currency, string(st.Status)
		total[i], version[i], lastSeq[i], items[i] = st.TotalCents, st.Version, s.lastSequence, int32(len(st.Items))
		paymentID[i], method[i], tracking[i] = optional(st.PaymentID), optional(st.PaymentMethod), optional(st.TrackingNumber)
		carrier[i], rs[i] = optional(st.Carrier), optional(st.CancelReason)
		if st.PaymentID != "" {
			paid[i] = &st.PaidCents
		}
		created[i], updated[i] = s.createdAt, s.updatedAt
		submitted[i], paidAt[i], shipped[i] = optional(s.submittedAt), optional(s.paidAt), optional(s.shippedAt)
		delivered[i], canceled[i] = optional(s.deliveredAt), optional(s.canceledAt)
		for product := range s.lines {
			line, ok := findItem(st.Items, product)
			if !ok {
				delOrder, delProduct = append(delOrder, oid), append(delProduct, product)
				continue
			}
			upOrder, upProduct = append(upOrder, oid), append(upProduct, product)
			upQty, upPrice = append(upQty, line.Quantity), append(upPrice, line.UnitPriceCents)
		}
	}
	b := &pgx.Batch{}
	b.Queue(`INSERT INTO orders (id, customer_id, currency, status, total_cents, item_count, payment_id, paid_cents,
		payment_method, tracking_number, carrier, cancel_reason, created_at, submitted_at, paid_at, shipped_at,
		delivered_at, canceled_at, updated_at, version, last_sequence)
		SELECT * FROM unnest($1::text[], $2::text[], $3::text[], $4::text[], $5::bigint[], $6::integer[], $7::text[],
			$8::bigint[], $9::text[], $10::text[], $11::text[], $12::text[], $13::timestamptz[], $14::timestamptz[],
			$15::timestamptz[], $16::timestamptz[], $17::timestamptz[], $18::timestamptz[], $19::timestamptz[],
			$20::bigint[], $21::bigint[])
		ON CONFLICT (id) DO UPDATE SET customer_id = EXCLUDED.customer_id, currency = EXCLUDED.currency,
			status = EXCLUDED.status, total_cents = EXCLUDED.total_cents, item_count = EXCLUDED.item_count,
			payment_id = EXCLUDED.payment_id, paid_cents = EXCLUDED.paid_cents, payment_method = EXCLUDED.payment_method,
			tracking_number = EXCLUDED.tracking_number, carrier = EXCLUDED.carrier, cancel_reason = EXCLUDED.cancel_reason,
			created_at = EXCLUDED.created_at, submitted_at = EXCLUDED.submitted_at, paid_at = EXCLUDED.paid_at,
			shipped_at = EXCLUDED.shipped_at, delivered_at = EXCLUDED.delivered_at, canceled_at = EXCLUDED.canceled_at,
			updated_at = EXCLUDED.updated_at, version = EXCLUDED.version, last_sequence = EXCLUDED.last_sequence`,
		id, customer, currency, status, total, items, paymentID, paid, method, tracking, carrier, rs,
		created, submitted, paidAt, shipped, delivered, canceled, updated, version, lastSeq)
	if len(delOrder) > 0 {
		b.Queue(`DELETE FROM order_items i USING unnest($1::text[], $2::text[]) AS d(order_id, product_id)
			WHERE i.order_id = d.order_id AND i.product_id = d.product_id`, delOrder, delProduct)
	}
	if len(upOrder) > 0 {
		b.Queue(`INSERT INTO order_items (order_id, product_id, quantity, unit_price_cents)
			SELECT * FROM unnest($1::text[], $2::text[], $3::bigint[], $4::bigint[])
			ON CONFLICT (order_id, product_id) DO UPDATE
			SET quantity = EXCLUDED.quantity, unit_price_cents = EXCLUDED.unit_price_cents`,
			upOrder, upProduct, upQty, upPrice)
	}
	if err := tx.SendBatch(ctx, b).Close(); err != nil {
		return fmt.Errorf("write orders: %w", err)
	}
	return nil
}

func findItem(items []order.Item, productID string) (order.Item, bool) {
	for _, it := range items {
		if it.ProductID == productID {
			return it, true
		}
	}
	return order.Item{}, false
}

func deref[T any](p *T) T {
	var zero T
	if p == nil {
		return zero
	}
	return *p
}
