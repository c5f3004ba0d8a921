package main

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"time"

	"github.com/spf13/cobra"

	"github.com/jetsource/jetsource/internal/config"
	"github.com/jetsource/jetsource/internal/devstack"
	"github.com/jetsource/jetsource/internal/projections/readmodel"
)

// catchUpWait bounds how long dev waits for the projections before it
// prints what they have.
const catchUpWait = 2 * time.Minute

func cmdDev(s *session) *cobra.Command {
	cfg := devstack.DefaultConfig()
	var demoOrders int
	c := &cobra.Command{
		Use:   "dev",
		Short: "run NATS, Postgres, the aggregator and every projector here, with a demo",
		Long: `Runs the all-in-one dev stack of make run in this process: NATS with JetStream,
a local Postgres (unless DATABASE_URL names one), the streams and the schema,
the aggregator and a projector per read model. Then it sends a demo workload,
prints an overview of the read models and the commands to try next, and runs
until Ctrl-C, which drains the services and stops NATS and Postgres. The data
stays in --data for the next run.`,
		Example: `  orderctl dev
  orderctl dev --reset --demo-orders 50
  orderctl dev --nats-port 0 --pg-port 0 --data /tmp/dev`,
		Args: args(0),
	}
	c.RunE = s.runE(func(ctx context.Context, _ []string) error {
		if demoOrders < 0 {
			return usagef("--demo-orders %d: want 0 (no demo) or more", demoOrders)
		}
		cfg.DatabaseURL, cfg.Schema, cfg.Partitions, cfg.Out = s.cfg.DatabaseURL, s.cfg.Schema, s.cfg.Streams.Partitions, s.stdout
		// Problems with the stack's configuration are told in the flags' names.
		flags := config.NewEnv(func(string) (string, bool) { return "", false }, &cfg)
		for name, field := range map[string]any{"data": &cfg.Data, "nats-port": &cfg.NATSPort, "pg-port": &cfg.PGPort} {
			flags.Override("--"+name, c.Flags().Lookup(name).Value.String(), field)
		}
		st, err := devstack.New(cfg)
		if err := flags.Check(err); err != nil {
			return usageError{err}
		}
		err = st.Run(ctx)
		if err == nil && demoOrders > 0 {
			err = st.Demo(ctx, demoOrders, newStatusLine(s.stdout, 2*time.Second))
		}
		if err == nil {
			err = report(ctx, s, st, cfg.Data)
		}
		if err == nil {
			select {
			case <-ctx.Done():
			case <-st.Done():
				err = st.Err()
			}
		}
		if ctx.Err() != nil {
			err = nil // Ctrl-C: stop cleanly, whatever the stack was doing
			fmt.Fprintln(s.stdout)
		}
		return errors.Join(err, st.Close())
	})
	f := c.Flags()
	f.StringVar(&cfg.Data, "data", cfg.Data, "directory of the stack's data and log; reused by the next run")
	f.IntVar(&cfg.NATSPort, "nats-port", cfg.NATSPort, "NATS port on 127.0.0.1 (0: any free port)")
	f.IntVar(&cfg.PGPort, "pg-port", cfg.PGPort, "Postgres port on 127.0.0.1, if this one is free (0: any free port); unused with DATABASE_URL")
	f.BoolVar(&cfg.Reset, "reset", false, "wipe the data first (with DATABASE_URL, drop JETSOURCE_SCHEMA there too)")
	f.IntVar(&demoOrders, "demo-orders", 500, "orders the demo workload sends through their lifecycle (0: no demo)")
	return c
}

// report waits until the projections have caught up with the event store,
// prints an overview of the read models and how to talk to the stack.
func report(ctx context.Context, s *session, st *devstack.Stack, data string) error {
	lags, err := waitCaughtUp(ctx, s, st)
	if err != nil {
		return err
	}
	o, err := readmodel.ReadOverview(ctx, st.Pool(), s.cfg.Schema)
	if err != nil {
		return err
	}
	if err := o.Print(s.stdout); err != nil {
		return err
	}
	parts := make([]string, len(lags))
	for i, l := range lags {
		parts[i] = fmt.Sprintf("%s %d events / %.1f s behind", l.Projection, l.EventsBehind, l.SecondsBehind)
	}
	fmt.Fprintf(s.stdout, "  Lag: %s\n", strings.Join(parts, ", "))
	recent := "$order"
	if len(o.Recent) > 0 {
		recent = o.Recent[0].ID
	}
	printHowTo(s, st, recent, data)
	return nil
}

// waitCaughtUp polls the projections' lag every 250 ms until none is
// behind, for at most catchUpWait.
func waitCaughtUp(ctx context.Context, s *session, st *devstack.Stack) ([]lagReport, error) {
	line := newStatusLine(s.stdout, 5*time.Second)
	defer line.Finish()
	deadline := time.Now().Add(catchUpWait)
	for {
		lags, err := lagReports(ctx, st.Admin(), readmodel.Names())
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
			fmt.Fprintf(s.stdout, "The projections are still %d events behind after %s; see the log.\n", behind, catchUpWait)
			return lags, nil
		}
		line.Update(fmt.Sprintf("Waiting for the projections to catch up: %d events behind", behind))
		select {
		case <-ctx.Done():
			return nil, ctx.Err()
		case <-st.Done():
			return nil, st.Err()
		case <-time.After(250 * time.Millisecond):
		}
	}
}

// printHowTo prints the commands that talk to the running stack. Each works
// as printed, also when pasted again or after the next run: the new order's
// id is made fresh in the shell (from the time, in nanoseconds where date
// has them).
func printHowTo(s *session, st *devstack.Stack, recent, data string) {
	fmt.Fprintf(s.stdout, `
The stack is running. In another terminal, from the repository (make run built
./bin/orderctl; go run ./cmd/orderctl works too):

  export NATS_URL=%s
  export DATABASE_URL='%s'
  order=ord-$(date +%%s%%N)
  ./bin/orderctl send $order CreateOrder '{"customerId":"cust-1","currency":"EUR"}'
  ./bin/orderctl send --id add-$order $order AddItem '{"productId":"sku-1","quantity":2,"unitPriceCents":1999}'
  ./bin/orderctl wait --projection order_summary add-$order
  ./bin/orderctl state $order
  ./bin/orderctl history %s
  ./bin/orderctl tail     # the events as they come; Ctrl-C stops it
  ./bin/orderctl lag
  ./bin/orderctl dlq list
  psql "$DATABASE_URL" -c 'SELECT status, count(*) FROM %s.orders GROUP BY status'

Logs: %s (JSON).
Press Ctrl-C to stop; the data stays in %s for the next run (--reset wipes it).
`, st.NATSURL(), devstack.Redact(st.DatabaseURL()), recent, s.cfg.Schema, st.LogPath(), data)
}
