package main

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"strconv"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"github.com/spf13/cobra"

	"github.com/jetsource/jetsource/client"
	"github.com/jetsource/jetsource/contract"
	"github.com/jetsource/jetsource/internal/order"
)

// commandFields is send's help on the command types: the data each takes.
// A test holds it to the contract's types.
const commandFields = `Command types and their data (a JSON object; * marks a required field):
  CreateOrder   customerId*, currency (ISO 4217, default USD),
                items (a list of AddItem data: the order's first items)
  AddItem       productId*, quantity* (1 to 1000000), unitPriceCents* (0 or more)
  RemoveItem    productId*
  SubmitOrder   none
  PayOrder      paymentId*, amountCents* (the order's total), method*
  ShipOrder     trackingNumber*, carrier*
  DeliverOrder  none
  CancelOrder   reason*
Ids (order, command, product, customer, payment) are 1 to 128 characters of
A-Z, a-z, 0-9, _ and -.`

func cmdSend(s *session) *cobra.Command {
	var (
		id, user, correlation string
		timeout               time.Duration
		asJSON                bool
	)
	c := &cobra.Command{
		Use:   "send <orderId> <CommandType> [data-json]",
		Short: "send a command and print its result",
		Long: `Sends a command for an order and waits for its result: accepted (exit code 0,
with the order's new version) or rejected (exit code 3, with the error code and
why). Data the order domain would refuse is a usage error (exit code 2) and is
not sent.

If no result comes within --timeout, the command stays queued and is handled
once an aggregator runs: orderctl result <commandId> shows its outcome then, and
re-sending with the same --id returns that outcome instead of sending it twice.

` + commandFields,
		Example: `  order=ord-$(date +%s)
  orderctl send $order CreateOrder '{"customerId":"cust-1","currency":"EUR"}'
  orderctl send $order AddItem '{"productId":"sku-1","quantity":2,"unitPriceCents":1999}'
  orderctl send --id pay-$order $order PayOrder '{"paymentId":"pay-1","amountCents":3998,"method":"card"}'
  orderctl send --json $order SubmitOrder`,
		Args: args(2, "<orderId>", "<CommandType>", "[data-json]"),
	}
	c.RunE = s.runE(func(ctx context.Context, args []string) error {
		orderID, commandType := args[0], args[1]
		data := []byte(nil)
		if len(args) == 3 {
			data = []byte(args[2])
		}
		if err := contract.ValidateID("orderId", orderID); err != nil {
			return usageError{err}
		}
		if id != "" {
			if err := contract.ValidateID("--id", id); err != nil {
				return usageError{err}
			}
		}
		// The domain's checks make a bad command a usage error here rather
		// than a rejection; what is sent is the contract's form of it.
		if _, err := order.ParseCommand(commandType, data); err != nil {
			return usagef("%s: %v", commandType, err)
		}
		cmd, err := contract.ParseCommand(commandType, data)
		if err != nil {
			return usageError{err}
		}
		cl, err := s.Client()
		if err != nil {
			return err
		}
		env := client.NewEnvelope(orderID, cmd)
		env.Metadata = contract.CommandMetadata{UserID: user, CorrelationID: correlation}
		ctx, cancel := context.WithTimeout(ctx, timeout)
		defer cancel()
		if id != "" {
			env.ID = id
			// A re-used id returns the first command's outcome: say so,
			// rather than let it pass for this command's.
			switch r, err := cl.Result(ctx, id); {
			case errors.Is(err, client.ErrNoResult):
			case err != nil:
				return resultsError(err)
			case r.OrderID != orderID:
				return usagef("command id %s was used for order %s already (its outcome: orderctl result %s); leave --id out for a fresh one", id, r.OrderID, id)
			default:
				fmt.Fprintf(s.stderr, "orderctl send: command %s was sent before; this is its outcome, and nothing was sent again\n", id)
				return s.printResult(r, asJSON)
			}
		}
		switch err := cl.Publish(ctx, env); {
		case errors.Is(err, jetstream.ErrNoStreamResponse):
			return fmt.Errorf("%w: no stream stores commands on this NATS server; create the streams with orderctl streams apply (the dev stack creates them)", err)
		case errors.Is(err, context.DeadlineExceeded):
			return fmt.Errorf("NATS did not acknowledge command %s within %s: it may or may not be stored; re-sending it with --id %s is safe (a re-sent command returns its first outcome)",
				env.ID, timeout, env.ID)
		case err != nil:
			return err
		}
		r, err := cl.Await(ctx, env.ID)
		if errors.Is(err, context.DeadlineExceeded) {
			return fmt.Errorf("no result for command %s within %s. It is queued and will be handled once an aggregator runs (is one running?); see its outcome with orderctl result %s, or re-send it with --id %s",
				env.ID, timeout, env.ID, env.ID)
		}
		if err != nil {
			return err
		}
		return s.printResult(r, asJSON)
	})
	f := c.Flags()
	f.StringVar(&id, "id", "", "command id (default: a new random one); re-sending an id returns that command's outcome")
	f.StringVar(&user, "user", "", "metadata.userId")
	f.StringVar(&correlation, "correlation", "", "metadata.correlationId")
	f.DurationVar(&timeout, "timeout", 10*time.Second, "how long to wait for the result")
	f.BoolVar(&asJSON, "json", false, "print the result as JSON, as it is on orders.results.<commandId>")
	return c
}

// printResult prints a command's result; a rejection is returned as a
// *client.RejectedError, exit code 3.
func (s *session) printResult(r contract.Result, asJSON bool) error {
	if asJSON {
		if err := printJSON(s.stdout, r); err != nil {
			return err
		}
	} else if r.Status == contract.StatusRejected {
		fmt.Fprintf(s.stdout, "command %s on order %s: rejected, %s: %s\n", r.CommandID, r.OrderID, r.Error.Code, r.Error.Message)
	} else {
		fmt.Fprintf(s.stdout, "command %s on order %s: %s, the order is at version %d (stream sequence %d, events %s)\n",
			r.CommandID, r.OrderID, r.Status, r.Version, r.StreamSequence, strings.Join(r.EventIDs, ", "))
	}
	if r.Status == contract.StatusRejected {
		return &client.RejectedError{Result: r}
	}
	return nil
}

func cmdResult(s *session) *cobra.Command {
	var (
		timeout time.Duration
		asJSON  bool
	)
	c := &cobra.Command{
		Use:   "result <commandId>",
		Short: "show the outcome of a command sent earlier",
		Long: `Shows a command's result: accepted (exit code 0) or rejected (exit code 3). With
--timeout, waits that long for a result that has not come yet. No result (exit
code 1) means the command is still queued, was never sent, or its result has
expired (results are kept for JETSOURCE_RESULTS_MAX_AGE, a day by default).`,
		Example: `  orderctl result cmd-7
  orderctl result --timeout 30s --json cmd-7`,
		Args: args(1, "<commandId>"),
	}
	c.RunE = s.runE(func(ctx context.Context, args []string) error {
		id := args[0]
		if err := contract.ValidateID("commandId", id); err != nil {
			return usageError{err}
		}
		cl, err := s.Client()
		if err != nil {
			return err
		}
		r, err := cl.Result(ctx, id)
		if errors.Is(err, client.ErrNoResult) && timeout > 0 {
			wait, cancel := context.WithTimeout(ctx, timeout)
			defer cancel()
			r, err = cl.Await(wait, id)
			if errors.Is(err, context.DeadlineExceeded) {
				err = client.ErrNoResult
			}
		}
		if errors.Is(err, client.ErrNoResult) {
			return fmt.Errorf("no result for command %s: it is still queued, was never sent, or its result has expired; wait for it with --timeout 30s", id)
		}
		if err != nil {
			return resultsError(err)
		}
		return s.printResult(r, asJSON)
	})
	c.Flags().DurationVar(&timeout, "timeout", 0, "how long to wait for a result that has not come yet (0: do not wait)")
	c.Flags().BoolVar(&asJSON, "json", false, "print the result as JSON")
	return c
}

// resultsError explains a failure to read the results stream.
func resultsError(err error) error {
	if errors.Is(err, nats.ErrNoResponders) {
		return fmt.Errorf("%w: no stream stores results on this NATS server; create the streams with orderctl streams apply (the dev stack creates them)", err)
	}
	return err
}

func cmdHistory(s *session) *cobra.Command {
	var asJSON bool
	c := &cobra.Command{
		Use:   "history <orderId>",
		Short: "print an order's events",
		Long: `Prints an order's events, oldest first, as the orders-query service reads
them: version, time, type, data, the command that caused it and its user. With
--json, one event envelope per line, upcast to the current schema versions.`,
		Example: `  orderctl history ord-1
  orderctl history --json ord-1 | jq .data`,
		Args: args(1, "<orderId>"),
	}
	c.RunE = s.runE(func(ctx context.Context, args []string) error {
		orderID := args[0]
		if err := contract.ValidateID("orderId", orderID); err != nil {
			return usageError{err}
		}
		cl, err := s.Client()
		if err != nil {
			return err
		}
		var events []contract.Event
		for q := (contract.HistoryQuery{OrderID: orderID, Limit: contract.MaxHistoryLimit}); ; {
			page, err := cl.History(ctx, q)
			if err != nil {
				return queryError(err)
			}
			events = append(events, page.Events...)
			if !page.More {
				break
			}
			q.AfterVersion = page.Events[len(page.Events)-1].Version
		}
		if asJSON {
			return printJSONLines(s.stdout, events)
		}
		w := newTable(s.stdout)
		fmt.Fprintln(w, "VERSION\tTIME\tTYPE\tDATA\tCOMMAND\tUSER")
		for _, e := range events {
			fmt.Fprintf(w, "%d\t%s\t%s\t%s\t%s\t%s\n", e.Version, e.Metadata.Timestamp.UTC().Format(time.RFC3339Nano),
				e.Type, e.Data, e.Metadata.CausationID, dash(e.Metadata.UserID))
		}
		return w.Flush()
	})
	c.Flags().BoolVar(&asJSON, "json", false, "print the event envelopes, one JSON object per line")
	return c
}

// queryError tells an answer of the orders-query service with what to do:
// a bad request is an input error (exit code 2), an order or version that
// does not exist a failure (exit code 1).
func queryError(err error) error {
	var q *client.QueryError
	switch {
	case errors.As(err, &q) && q.Code == contract.QueryBadRequest:
		return usageError{errors.New(q.Message)}
	case errors.As(err, &q) && q.Code == contract.QueryNotFound:
		return fmt.Errorf("%s (orderctl history <orderId> lists an order's versions and their times)", q.Message)
	case errors.Is(err, nats.ErrNoResponders):
		return fmt.Errorf("%w; start the query service (./bin/query; make run starts one)", err)
	}
	return err
}

func cmdState(s *session) *cobra.Command {
	var (
		version int64
		at      timeFlag
		asJSON  bool
	)
	c := &cobra.Command{
		Use:   "state <orderId>",
		Short: "print an order's state, now or as it was at a version or time",
		Long: `Prints an order's state, folded from its events by the orders-query service: now,
after a version (--version N), or as it was at a time (--at, RFC 3339), not
both. An order that does not exist, a version it has not reached and a time
before it was created are errors (exit code 1).`,
		Example: `  orderctl state ord-1
  orderctl state ord-1 --version 1
  orderctl state ord-1 --at 2026-11-23T10:00:00Z
  orderctl state --json ord-1 | jq .totalCents`,
		Args: args(1, "<orderId>"),
	}
	c.RunE = s.runE(func(ctx context.Context, args []string) error {
		q := contract.StateQuery{OrderID: args[0], Version: version}
		when := "now"
		switch {
		case c.Flags().Changed("version") && c.Flags().Changed("at"):
			return usagef("--version and --at both pick the moment; give one")
		case c.Flags().Changed("version") && version < 1:
			return usagef("--version %d: versions count from 1", version)
		case c.Flags().Changed("version"):
			when = "after version " + strconv.FormatInt(version, 10)
		case c.Flags().Changed("at"):
			q.At, when = &contract.Time{Time: at.Time}, "as of "+at.String()
		}
		if err := contract.ValidateID("orderId", q.OrderID); err != nil {
			return usageError{err}
		}
		cl, err := s.Client()
		if err != nil {
			return err
		}
		state, err := cl.State(ctx, q)
		if err != nil {
			return queryError(err)
		}
		if asJSON {
			return printJSON(s.stdout, state)
		}
		return printState(s.stdout, state, when)
	})
	f := c.Flags()
	f.Int64Var(&version, "version", 0, "the state after this version")
	f.Var(&at, "at", "the state as it was at this time (RFC 3339, such as 2026-11-23T10:00:00Z)")
	f.BoolVar(&asJSON, "json", false, "print the state as JSON")
	return c
}

// printState shows an order's state for a person; when says which
// moment it is.
func printState(out io.Writer, st contract.OrderState, when string) error {
	fmt.Fprintf(out, "order %s, version %d (%s)\n", st.ID, st.Version, when)
	w := newTable(out)
	fmt.Fprintf(w, "  status\t%s\n", st.Status)
	fmt.Fprintf(w, "  customer\t%s\n", st.CustomerID)
	fmt.Fprintf(w, "  total\t%s %s\n", money(st.TotalCents), st.Currency)
	if st.PaymentID != "" {
		fmt.Fprintf(w, "  payment\t%s: %s %s by %s\n", st.PaymentID, money(st.PaidCents), st.Currency, st.PaymentMethod)
	}
	if st.TrackingNumber != "" {
		fmt.Fprintf(w, "  shipment\t%s by %s\n", st.TrackingNumber, st.Carrier)
	}
	if st.CancelReason != "" {
		fmt.Fprintf(w, "  canceled\t%s\n", st.CancelReason)
	}
	fmt.Fprintf(w, "  items\t%d\n", len(st.Items))
	if err := w.Flush(); err != nil {
		return err
	}
	if len(st.Items) == 0 {
		return nil
	}
	w = newTable(out)
	fmt.Fprintln(w, "    PRODUCT\tQUANTITY\tUNIT PRICE\tAMOUNT")
	for _, it := range st.Items {
		fmt.Fprintf(w, "    %s\t%d\t%s\t%s\n", it.ProductID, it.Quantity, money(it.UnitPriceCents), money(it.Quantity*it.UnitPriceCents))
	}
	return w.Flush()
}

// money shows cents as units with two decimals.
func money(cents int64) string { return fmt.Sprintf("%d.%02d", cents/100, cents%100) }

// timeFlag is a flag holding an RFC 3339 time.
type timeFlag struct{ time.Time }

func (t *timeFlag) String() string {
	if t.IsZero() {
		return ""
	}
	return t.Format(time.RFC3339Nano)
}

func (t *timeFlag) Set(s string) error {
	v, err := time.Parse(time.RFC3339Nano, s)
	if err != nil {
		return &valueError{"want an RFC 3339 time such as 2026-11-23T10:00:00Z or 2026-11-23T11:00:00+01:00"}
	}
	t.Time = v
	return nil
}

func (t *timeFlag) Type() string { return "time" }

func printJSON(out io.Writer, v any) error {
	enc := json.NewEncoder(out)
	enc.SetIndent("", "  ")
	return enc.Encode(v)
}

// printJSONLines prints one JSON object per line.
func printJSONLines[T any](out io.Writer, vs []T) error {
	enc := json.NewEncoder(out)
	for _, v := range vs {
		if err := enc.Encode(v); err != nil {
			return err
		}
	}
	return nil
}

// newTable aligns tab-separated columns; Flush writes them.
func newTable(out io.Writer) *tabwriter.Writer { return tabwriter.NewWriter(out, 0, 4, 2, ' ', 0) }

func dash(s string) string {
	if s == "" {
		return "-"
	}
	return s
}

func cmdTail(s *session) *cobra.Command {
	var (
		after  uint64
		asJSON bool
	)
	c := &cobra.Command{
		Use:   "tail [orderId]",
		Short: "follow the events as they are stored, of every order or of one",
		Long: `Prints events as they are stored until Ctrl-C: of every order from now on, or
of one order from its first event on. --after resumes after a stream sequence
(0: from the first event). Lines show the stream sequence, time, order, version,
type and data; with --json, one event envelope per line.`,
		Example: `  orderctl tail
  orderctl tail ord-1
  orderctl tail --after 0 --json | jq -c '{order: .aggregateId, type}'`,
		Args: args(0, "[orderId]"),
	}
	c.RunE = s.runE(func(ctx context.Context, args []string) error {
		orderID := ""
		if len(args) == 1 {
			orderID = args[0]
			if err := contract.ValidateID("orderId", orderID); err != nil {
				return usageError{err}
			}
		}
		js, err := s.JetStream()
		if err != nil {
			return err
		}
		if orderID == "" && !c.Flags().Changed("after") {
			stream, err := js.Stream(ctx, contract.EventsStream)
			if err != nil {
				return streamError(err)
			}
			after = stream.CachedInfo().State.LastSeq
		}
		cl, err := s.Client()
		if err != nil {
			return err
		}
		what := "every order"
		if orderID != "" {
			what = "order " + orderID
		}
		fmt.Fprintf(s.stderr, "orderctl tail: following %s after stream sequence %d; Ctrl-C stops\n", what, after)
		enc := json.NewEncoder(s.stdout)
		for f, err := range cl.Follow(ctx, orderID, after) {
			e := f.Event
			switch {
			case err != nil && e.Sequence == 0:
				return err
			case err != nil:
				fmt.Fprintf(s.stderr, "orderctl tail: event at stream sequence %d: %v\n", e.Sequence, err)
			case asJSON:
				if err := enc.Encode(e); err != nil {
					return err
				}
			default:
				fmt.Fprintf(s.stdout, "%d  %s  %s  %d  %s  %s\n", e.Sequence, e.Metadata.Timestamp.UTC().Format(time.RFC3339Nano),
					e.AggregateID, e.Version, e.Type, e.Data)
			}
		}
		return nil
	})
	c.Flags().Uint64Var(&after, "after", 0, "start after this stream sequence (0: from the first event; default: from now, or an order's first event)")
	c.Flags().BoolVar(&asJSON, "json", false, "print the event envelopes, one JSON object per line")
	return c
}
