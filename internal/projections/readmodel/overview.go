package readmodel

import (
	"context"
	"fmt"
	"io"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/jackc/pgx/v5"
)

// Overview is what the read models hold, in brief: what `orderctl dev`
// shows after its demo.
type Overview struct {
	Schema string
	// Orders counts order_summary's orders; ByStatus splits them, most
	// first.
	Orders   int64
	ByStatus []StatusCount
	// Sales are sales_daily's latest rows, newest day first.
	Sales []SalesDay
	// Recent are order_summary's most recently changed orders.
	Recent []RecentOrder
	// HistoryEvents counts order_history's rows.
	HistoryEvents int64
	// FailedDeadLetters and ParkedDeadLetters count the open dead letters
	// of all projections.
	FailedDeadLetters, ParkedDeadLetters int64
}

// StatusCount is the number of orders in one status.
type StatusCount struct {
	Status string
	Orders int64
}

// SalesDay is one row of sales_daily.
type SalesDay struct {
	Day                                      time.Time
	Currency                                 string
	OrdersPaid, RevenueCents, OrdersCanceled int64
}

// RecentOrder is one row of orders.
type RecentOrder struct {
	ID, Status, Currency string
	TotalCents           int64
	Products             int
	UpdatedAt            time.Time
}

// Querier is what ReadOverview needs of a pool or a connection.
type Querier interface {
	Query(ctx context.Context, sql string, args ...any) (pgx.Rows, error)
	QueryRow(ctx context.Context, sql string, args ...any) pgx.Row
}

// ReadOverview reads the overview of the read models in schema.
func ReadOverview(ctx context.Context, db Querier, schema string) (Overview, error) {
	table := func(name string) string { return pgx.Identifier{schema, name}.Sanitize() }
	o := Overview{Schema: schema}
	var err error
	if o.ByStatus, err = collect(ctx, db, "SELECT status, count(*) FROM "+table("orders")+" GROUP BY status ORDER BY count(*) DESC, status",
		func(r pgx.CollectableRow) (StatusCount, error) {
			var c StatusCount
			return c, r.Scan(&c.Status, &c.Orders)
		}); err != nil {
		return Overview{}, err
	}
	for _, c := range o.ByStatus {
		o.Orders += c.Orders
	}
	if o.Sales, err = collect(ctx, db, "SELECT day, currency, orders_paid, revenue_cents, orders_canceled FROM "+table("sales_daily")+
		" ORDER BY day DESC, currency LIMIT 21",
		func(r pgx.CollectableRow) (SalesDay, error) {
			var d SalesDay
			return d, r.Scan(&d.Day, &d.Currency, &d.OrdersPaid, &d.RevenueCents, &d.OrdersCanceled)
		}); err != nil {
		return Overview{}, err
	}
	if o.Recent, err = collect(ctx, db, "SELECT id, status, total_cents, currency, item_count, updated_at FROM "+table("orders")+
		" ORDER BY last_sequence DESC LIMIT 5",
		func(r pgx.CollectableRow) (RecentOrder, error) {
			var ro RecentOrder
			return ro, r.Scan(&ro.ID, &ro.Status, &ro.TotalCents, &ro.Currency, &ro.Products, &ro.UpdatedAt)
		}); err != nil {
		return Overview{}, err
	}
	if err := db.QueryRow(ctx, "SELECT count(*) FROM "+table("order_history")).Scan(&o.HistoryEvents); err != nil {
		return Overview{}, fmt.Errorf("overview: %w", err)
	}
	if err := db.QueryRow(ctx, "SELECT count(*) FILTER (WHERE status = 'failed'), count(*) FILTER (WHERE status = 'parked') FROM "+
		table("projection_dead_letters")).Scan(&o.FailedDeadLetters, &o.ParkedDeadLetters); err != nil {
		return Overview{}, fmt.Errorf("overview: %w", err)
	}
	return o, nil
}

func collect[T any](ctx context.Context, db Querier, sql string, scan pgx.RowToFunc[T]) ([]T, error) {
	rows, err := db.Query(ctx, sql)
	if err != nil {
		return nil, fmt.Errorf("overview: %w", err)
	}
	out, err := pgx.CollectRows(rows, scan)
	if err != nil {
		return nil, fmt.Errorf("overview: %w", err)
	}
	return out, nil
}

// Print writes the overview for a person to read.
func (o Overview) Print(w io.Writer) error {
	fmt.Fprintf(w, "\nRead models (Postgres schema %s)\n", o.Schema)
	byStatus := make([]string, len(o.ByStatus))
	for i, c := range o.ByStatus {
		byStatus[i] = fmt.Sprintf("%s %d", c.Status, c.Orders)
	}
	fmt.Fprintf(w, "\n  Orders by status (order_summary): %d orders", o.Orders)
	if o.Orders > 0 {
		fmt.Fprintf(w, ": %s", strings.Join(byStatus, ", "))
	}
	fmt.Fprintf(w, "\n\n  Revenue by day and currency (sales_daily):\n")
	tw := tabwriter.NewWriter(w, 0, 4, 2, ' ', 0)
	fmt.Fprintln(tw, "    DAY\tCURRENCY\tORDERS PAID\tREVENUE\tORDERS CANCELED")
	for _, d := range o.Sales {
		fmt.Fprintf(tw, "    %s\t%s\t%d\t%s\t%d\n", d.Day.Format(time.DateOnly), d.Currency, d.OrdersPaid, money(d.RevenueCents), d.OrdersCanceled)
	}
	if err := tw.Flush(); err != nil {
		return err
	}
	fmt.Fprintf(w, "\n  Recent orders (order_summary):\n")
	tw = tabwriter.NewWriter(w, 0, 4, 2, ' ', 0)
	fmt.Fprintln(tw, "    ORDER\tSTATUS\tTOTAL\tPRODUCTS\tUPDATED AT")
	for _, r := range o.Recent {
		fmt.Fprintf(tw, "    %s\t%s\t%s %s\t%d\t%s\n", r.ID, r.Status, money(r.TotalCents), r.Currency, r.Products, r.UpdatedAt.UTC().Format(time.RFC3339))
	}
	if err := tw.Flush(); err != nil {
		return err
	}
	fmt.Fprintf(w, "\n  Audit trail (order_history): %d events\n", o.HistoryEvents)
	_, err := fmt.Fprintf(w, "  Dead letters: %d failed, %d parked behind them\n", o.FailedDeadLetters, o.ParkedDeadLetters)
	return err
}

// money formats cents as units with two decimals.
func money(cents int64) string { return fmt.Sprintf("%d.%02d", cents/100, cents%100) }
