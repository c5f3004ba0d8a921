package main

import (
	"context"
	"fmt"
	"strings"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/jetsource/jetsource/internal/projections/readmodel"
)

// catchUpWait bounds how long report waits for the projections before it
// prints what they have.
const catchUpWait = 2 * time.Minute

// report waits until the projections have caught up with the event store,
// prints a summary of the read models and how to talk to the stack.
func (st *stack) report(ctx context.Context) error {
	lags, err := st.waitCaughtUp(ctx)
	if err != nil {
		return err
	}
	recent, err := st.printSummary(ctx, lags)
	if err != nil {
		return err
	}
	st.printHowTo(recent)
	return nil
}

func (st *stack) waitCaughtUp(ctx context.Context) ([]lagReport, error) {
	line := newStatusLine(st.out, 5*time.Second)
	defer line.Finish()
	deadline := time.Now().Add(catchUpWait)
	for {
		lags, err := lagReports(ctx, st.admin, readmodel.Names())
		if err != nil {
			return nil, err
		}
		var behind uint64
		for _, l := range lags {
			behind += l.EventsBehind
		}
		if behind == 0 {
			return lags, nil
		}
		if time.Now().After(deadline) {
			line.Finish()
			st.printf("The projections are still %d events behind after %s; see the log.\n", behind, catchUpWait)
			return lags, nil
		}
		line.Update(fmt.Sprintf("Waiting for the projections to catch up: %d events behind", behind))
		select {
		case <-ctx.Done():
			return nil, ctx.Err()
		case err := <-st.failed:
			return nil, err
		case <-time.After(250 * time.Millisecond):
		}
	}
}

// printSummary prints what the read models hold, and returns the id of the
// most recently changed order, if any.
func (st *stack) printSummary(ctx context.Context, lags []lagReport) (string, error) {
	table := func(name string) string { return pgx.Identifier{st.cfg.Schema, name}.Sanitize() }
	st.printf("\nRead models (Postgres schema %s)\n", st.cfg.Schema)

	rows, err := st.pool.Query(ctx, "SELECT status, count(*) FROM "+table("orders")+" GROUP BY status ORDER BY count(*) DESC, status")
	if err != nil {
		return "", fmt.Errorf("summary: %w", err)
	}
	var (
		status   string
		n, total int64
		byStatus []string
	)
	if _, err := pgx.ForEachRow(rows, []any{&status, &n}, func() error {
		byStatus = append(byStatus, fmt.Sprintf("%s %d", status, n))
		total += n
		return nil
	}); err != nil {
		return "", fmt.Errorf("summary: %w", err)
	}
	st.printf("\n  Orders by status (order_summary): %d orders", total)
	if total > 0 {
		st.printf(": %s", strings.Join(byStatus, ", "))
	}
	st.printf("\n")

	rows, err = st.pool.Query(ctx, "SELECT day, currency, orders_paid, revenue_cents, orders_canceled FROM "+table("sales_daily")+
		" ORDER BY day DESC, currency LIMIT 21")
	if err != nil {
		return "", fmt.Errorf("summary: %w", err)
	}
	var (
		day                    time.Time
		currency               string
		paid, revenue, cancels int64
	)
	st.printf("\n  Revenue by day and currency (sales_daily):\n")
	w := newTable(st.out)
	fmt.Fprintln(w, "    DAY\tCURRENCY\tORDERS PAID\tREVENUE\tORDERS CANCELED")
	if _, err := pgx.ForEachRow(rows, []any{&day, &currency, &paid, &revenue, &cancels}, func() error {
		fmt.Fprintf(w, "    %s\t%s\t%d\t%s\t%d\n", day.Format(time.DateOnly), currency, paid, money(revenue), cancels)
		return nil
	}); err != nil {
		return "", fmt.Errorf("summary: %w", err)
	}
	if err := w.Flush(); err != nil {
		return "", err
	}

	rows, err = st.pool.Query(ctx, "SELECT id, status, total_cents, currency, item_count, updated_at FROM "+table("orders")+
		" ORDER BY last_sequence DESC LIMIT 5")
	if err != nil {
		return "", fmt.Errorf("summary: %w", err)
	}
	var (
		id, recent string
		items      int
		updated    time.Time
	)
	st.printf("\n  Recent orders (order_summary):\n")
	w = newTable(st.out)
	fmt.Fprintln(w, "    ORDER\tSTATUS\tTOTAL\tPRODUCTS\tUPDATED AT")
	if _, err := pgx.ForEachRow(rows, []any{&id, &status, &n, &currency, &items, &updated}, func() error {
		if recent == "" {
			recent = id
		}
		fmt.Fprintf(w, "    %s\t%s\t%s %s\t%d\t%s\n", id, status, money(n), currency, items, updated.UTC().Format(time.RFC3339))
		return nil
	}); err != nil {
		return "", fmt.Errorf("summary: %w", err)
	}
	if err := w.Flush(); err != nil {
		return "", err
	}

	if err := st.pool.QueryRow(ctx, "SELECT count(*) FROM "+table("order_history")).Scan(&n); err != nil {
		return "", fmt.Errorf("summary: %w", err)
	}
	st.printf("\n  Audit trail (order_history): %d events\n", n)
	var failed, parked int64
	if err := st.pool.QueryRow(ctx, "SELECT count(*) FILTER (WHERE status = 'failed'), count(*) FILTER (WHERE status = 'parked') FROM "+
		table("projection_dead_letters")).Scan(&failed, &parked); err != nil {
		return "", fmt.Errorf("summary: %w", err)
	}
	st.printf("  Dead letters: %d failed, %d parked behind them\n", failed, parked)
	parts := make([]string, len(lags))
	for i, l := range lags {
		parts[i] = fmt.Sprintf("%s %d events / %.1f s behind", l.Projection, l.EventsBehind, l.SecondsBehind)
	}
	st.printf("  Lag: %s\n", strings.Join(parts, ", "))
	return recent, nil
}

// money formats cents as units with two decimals.
func money(cents int64) string { return fmt.Sprintf("%d.%02d", cents/100, cents%100) }

// printHowTo prints the commands that talk to the running stack.
func (st *stack) printHowTo(recent string) {
	if recent == "" {
		recent = "ord-1"
	}
	st.printf(`
The stack is running. In another terminal, from the repository (make run built
./bin/orderctl; go run ./cmd/orderctl works too):

  export NATS_URL=%s
  export DATABASE_URL='%s'
  ./bin/orderctl send ord-1 CreateOrder '{"customerId":"cust-1","currency":"EUR"}'
  ./bin/orderctl history %s
  ./bin/orderctl state %s
  ./bin/orderctl lag
  ./bin/orderctl dlq list
  psql "$DATABASE_URL" -c 'SELECT status, count(*) FROM %s.orders GROUP BY status'

Logs: %s/jetsource.log (JSON).
Press Ctrl-C to stop; the data stays in %s for the next run (--reset wipes it).
`, st.natsURL, redact(st.dbURL), recent, recent, st.cfg.Schema, st.opts.data, st.opts.data)
}
