package readmodel

import (
	"context"
	"fmt"
	"sort"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/jetsource/jetsource/contract"
	"github.com/jetsource/jetsource/internal/order"
	"github.com/jetsource/jetsource/internal/projections"
)

// SalesDaily counts, per UTC day of the event and currency, the orders
// paid, their revenue and the orders canceled, in sales_daily. A payment
// counts on the day it was made and a cancellation on its own day; a paid
// order canceled later still counts as paid (there is no refund event).
// OrderPaid and OrderCanceled carry no currency, so the projection keeps
// each order's currency from OrderCreated in sales_daily_orders, with the
// version of the newest event it counted: an event at or below it is
// refused rather than counted twice.
type SalesDaily struct{}

// Name implements projections.Projection.
func (SalesDaily) Name() string { return NameSalesDaily }

// Tables implements projections.Projection.
func (SalesDaily) Tables() []string { return []string{"sales_daily", "sales_daily_orders"} }

type dayCurrency struct {
	day      time.Time
	currency string
}

type sales struct{ paid, revenue, canceled int64 }

// salesOrder is an order as sales_daily_orders has it; created marks one
// that the batch creates.
type salesOrder struct {
	currency    string
	lastVersion int64
	created     bool
}

// Apply sums the batch per day and currency and adds the sums to the rows.
func (SalesDaily) Apply(ctx context.Context, tx projections.Tx, events []contract.Event) error {
	evs, err := parse(events)
	if err != nil {
		return err
	}
	orders, err := loadSalesOrders(ctx, tx, evs)
	if err != nil {
		return err
	}
	sums, err := countSales(evs, orders)
	if err != nil {
		return err
	}
	return writeSales(ctx, tx, orders, sums)
}

// loadSalesOrders returns the orders the batch creates, pays or cancels:
// those it creates from the batch, the others from sales_daily_orders.
func loadSalesOrders(ctx context.Context, tx projections.Tx, evs []parsed) (map[string]*salesOrder, error) {
	orders := map[string]*salesOrder{}
	var load []string
	for _, e := range evs {
		switch d := e.data.(type) {
		case order.OrderCreated:
			if _, dup := orders[e.AggregateID]; dup {
				return nil, fmt.Errorf("%w: order %s created twice", ErrUnexpectedEvent, e.AggregateID)
			}
			orders[e.AggregateID] = &salesOrder{currency: d.Currency, lastVersion: e.Version, created: true}
		case order.OrderPaid, order.OrderCanceled:
			if _, known := orders[e.AggregateID]; !known {
				orders[e.AggregateID] = &salesOrder{}
				load = append(load, e.AggregateID)
			}
		}
	}
	if len(load) == 0 {
		return orders, nil
	}
	rows, err := tx.Query(ctx, `SELECT order_id, currency, last_version FROM sales_daily_orders WHERE order_id = ANY($1)`, load)
	if err != nil {
		return nil, fmt.Errorf("load order currencies: %w", err)
	}
	var (
		id, cur string
		version int64
	)
	if _, err := pgx.ForEachRow(rows, []any{&id, &cur, &version}, func() error {
		orders[id].currency, orders[id].lastVersion = cur, version
		return nil
	}); err != nil {
		return nil, fmt.Errorf("load order currencies: %w", err)
	}
	return orders, nil
}

// countSales sums the payments and cancellations per day and currency,
// and moves each order's last counted version.
func countSales(evs []parsed, orders map[string]*salesOrder) (map[dayCurrency]*sales, error) {
	sums := map[dayCurrency]*sales{}
	for _, e := range evs {
		switch d := e.data.(type) {
		case order.OrderPaid, order.OrderCanceled:
			o := orders[e.AggregateID]
			switch {
			case o.currency == "":
				return nil, fmt.Errorf("%w: %s event %s of order %s, which was never created",
					ErrUnexpectedEvent, e.Type, e.ID, e.AggregateID)
			case e.Version <= o.lastVersion:
				return nil, fmt.Errorf("%w: %s event %s of order %s at version %d, which is counted up to version %d",
					ErrUnexpectedEvent, e.Type, e.ID, e.AggregateID, e.Version, o.lastVersion)
			}
			o.lastVersion = e.Version
			k := dayCurrency{day: e.at.Truncate(24 * time.Hour), currency: o.currency}
			if sums[k] == nil {
				sums[k] = &sales{}
			}
			if paid, ok := d.(order.OrderPaid); ok {
				sums[k].paid++
				sums[k].revenue += paid.AmountCents
			} else {
				sums[k].canceled++
			}
		}
	}
	return sums, nil
}

// writeSales writes the new orders, the orders' last counted versions and
// the sums.
func writeSales(ctx context.Context, tx projections.Tx, orders map[string]*salesOrder, sums map[dayCurrency]*sales) error {
	b := &pgx.Batch{}
	var ids, currencies []string
	var versions []int64
	for id, o := range orders {
		ids, currencies, versions = append(ids, id), append(currencies, o.currency), append(versions, o.lastVersion)
	}
	if len(ids) > 0 {
		// A created order is inserted; a second OrderCreated of one fails on
		// the key. The others' last version moves.
		b.Queue(`INSERT INTO sales_daily_orders (order_id, currency, last_version)
			SELECT * FROM unnest($1::text[], $2::text[], $3::bigint[]) AS o(order_id, currency, last_version)
			WHERE o.order_id = ANY($4)`, ids, currencies, versions, createdIDs(orders))
		b.Queue(`UPDATE sales_daily_orders s SET last_version = o.last_version
			FROM unnest($1::text[], $2::bigint[]) AS o(order_id, last_version)
			WHERE s.order_id = o.order_id AND NOT o.order_id = ANY($3)`, ids, versions, createdIDs(orders))
	}
	queueSums(b, sums)
	if b.Len() == 0 {
		return nil
	}
	if err := tx.SendBatch(ctx, b).Close(); err != nil {
		return fmt.Errorf("write daily sales: %w", err)
	}
	return nil
}

func createdIDs(orders map[string]*salesOrder) []string {
	out := []string{} // not NULL: ANY(NULL) matches nothing, NOT ANY(NULL) too
	for id, o := range orders {
		if o.created {
			out = append(out, id)
		}
	}
	return out
}

// queueSums adds the sums to their rows, in key order: concurrent batches
// of other partitions then lock shared day rows in the same order and
// cannot deadlock.
func queueSums(b *pgx.Batch, sums map[dayCurrency]*sales) {
	if len(sums) == 0 {
		return
	}
	keys := make([]dayCurrency, 0, len(sums))
	for k := range sums {
		keys = append(keys, k)
	}
	sort.Slice(keys, func(i, j int) bool {
		if !keys[i].day.Equal(keys[j].day) {
			return keys[i].day.Before(keys[j].day)
		}
		return keys[i].currency < keys[j].currency
	})
	days, curs := make([]time.Time, len(keys)), make([]string, len(keys))
	paid, revenue, canceled := make([]int64, len(keys)), make([]int64, len(keys)), make([]int64, len(keys))
	for i, k := range keys {
		s := sums[k]
		days[i], curs[i], paid[i], revenue[i], canceled[i] = k.day, k.currency, s.paid, s.revenue, s.canceled
	}
	b.Queue(`INSERT INTO sales_daily (day, currency, orders_paid, revenue_cents, orders_canceled)
		SELECT * FROM unnest($1::date[], $2::text[], $3::bigint[], $4::bigint[], $5::bigint[])
		ON CONFLICT (day, currency) DO UPDATE SET
			orders_paid = sales_daily.orders_paid + EXCLUDED.orders_paid,
			revenue_cents = sales_daily.revenue_cents + EXCLUDED.revenue_cents,
			orders_canceled = sales_daily.orders_canceled + EXCLUDED.orders_canceled`,
		days, curs, paid, revenue, canceled)
}
