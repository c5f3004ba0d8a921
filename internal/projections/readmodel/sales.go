package readmodel

import (
	"context"
	"fmt"
	"sort"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/jetsource/jetsource/contract"
	"github.com/jetsource/jetsource/internal/order"
)

// SalesDaily counts, per UTC day of the event and currency, the orders
// paid, their revenue and the orders canceled, in sales_daily. A payment
// counts on the day it was made and a cancellation on its own day; a paid
// order canceled later still counts as paid (there is no refund event).
// OrderPaid and OrderCanceled carry no currency, so the projection keeps
// each order's currency from OrderCreated in sales_daily_orders.
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

// Apply sums the batch per day and currency and adds the sums to the rows.
func (SalesDaily) Apply(ctx context.Context, tx pgx.Tx, events []contract.Event) error {
	evs, err := parse(events)
	if err != nil {
		return err
	}
	currency := map[string]string{}
	var newIDs, newCurrencies, load []string
	for _, e := range evs {
		switch d := e.data.(type) {
		case order.OrderCreated:
			if _, dup := currency[e.AggregateID]; dup {
				return fmt.Errorf("%w: order %s created twice", ErrUnexpectedEvent, e.AggregateID)
			}
			currency[e.AggregateID] = d.Currency
			newIDs, newCurrencies = append(newIDs, e.AggregateID), append(newCurrencies, d.Currency)
		case order.OrderPaid, order.OrderCanceled:
			if _, known := currency[e.AggregateID]; !known {
				currency[e.AggregateID] = ""
				load = append(load, e.AggregateID)
			}
		}
	}
	if len(load) > 0 {
		rows, err := tx.Query(ctx, `SELECT order_id, currency FROM sales_daily_orders WHERE order_id = ANY($1)`, load)
		if err != nil {
			return fmt.Errorf("load order currencies: %w", err)
		}
		var id, cur string
		if _, err := pgx.ForEachRow(rows, []any{&id, &cur}, func() error { currency[id] = cur; return nil }); err != nil {
			return fmt.Errorf("load order currencies: %w", err)
		}
	}
	sums := map[dayCurrency]*sales{}
	add := func(e parsed) *sales {
		k := dayCurrency{day: e.at.Truncate(24 * time.Hour), currency: currency[e.AggregateID]}
		if sums[k] == nil {
			sums[k] = &sales{}
		}
		return sums[k]
	}
	for _, e := range evs {
		switch d := e.data.(type) {
		case order.OrderPaid, order.OrderCanceled:
			if currency[e.AggregateID] == "" {
				return fmt.Errorf("%w: %s event %s of order %s, which was never created",
					ErrUnexpectedEvent, e.Type, e.ID, e.AggregateID)
			}
			s := add(e)
			if paid, ok := d.(order.OrderPaid); ok {
				s.paid++
				s.revenue += paid.AmountCents
			} else {
				s.canceled++
			}
		}
	}

	keys := make([]dayCurrency, 0, len(sums))
	for k := range sums {
		keys = append(keys, k)
	}
	// Rows in key order: concurrent batches of other partitions then lock
	// shared day rows in the same order and cannot deadlock.
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
	b := &pgx.Batch{}
	if len(newIDs) > 0 {
		b.Queue(`INSERT INTO sales_daily_orders (order_id, currency) SELECT * FROM unnest($1::text[], $2::text[])`,
			newIDs, newCurrencies)
	}
	if len(keys) > 0 {
		b.Queue(`INSERT INTO sales_daily (day, currency, orders_paid, revenue_cents, orders_canceled)
			SELECT * FROM unnest($1::date[], $2::text[], $3::bigint[], $4::bigint[], $5::bigint[])
			ON CONFLICT (day, currency) DO UPDATE SET
				orders_paid = sales_daily.orders_paid + EXCLUDED.orders_paid,
				revenue_cents = sales_daily.revenue_cents + EXCLUDED.revenue_cents,
				orders_canceled = sales_daily.orders_canceled + EXCLUDED.orders_canceled`,
			days, curs, paid, revenue, canceled)
	}
	if b.Len() == 0 {
		return nil
	}
	if err := tx.SendBatch(ctx, b).Close(); err != nil {
		return fmt.Errorf("write daily sales: %w", err)
	}
	return nil
}
