// Command query is JetSource's orders-query service: a NATS micro service
// answering orders.query.state (an order now, at a version or at a time)
// and orders.query.history (its events, page by page) from the event store.
// It maps the environment onto queryd.Config; queryd wires and runs it.
// SIGTERM stops it.
package main

import (
	"context"
	"io"
	"os"
	"os/signal"
	"syscall"

	"github.com/jetsource/jetsource/internal/config"
	"github.com/jetsource/jetsource/internal/daemon"
	"github.com/jetsource/jetsource/internal/queryd"
)

const synopsis = `query — JetSource's orders-query service

Usage:
  query [--help] [--version]

Answers orders.query.state and orders.query.history from the order events,
as the NATS micro service orders-query (nats micro ls), sharing the requests
with its other replicas, until SIGTERM. Configuration comes from the
environment:
`

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	os.Exit(run(ctx, os.Args[1:], os.LookupEnv, os.Stdout, os.Stderr))
}

// run runs the query service until ctx ends and returns the exit code.
func run(ctx context.Context, args []string, lookup func(string) (string, bool), stdout, stderr io.Writer) int {
	cfg := queryd.DefaultConfig()
	b := daemon.New("query", synopsis, args, lookup, &cfg)
	b.SetOutput(stdout, stderr)
	mapEnv(b.Env, &cfg)
	return b.Run(ctx, func() (daemon.Service, error) { return queryd.NewMain(cfg, b.Logger()) })
}

// mapEnv maps the environment onto cfg; the defaults are cfg's.
func mapEnv(env *config.Env, cfg *queryd.Config) {
	daemon.MapNATS(env, &cfg.NATS)
	env.Int("JETSOURCE_PARTITIONS", "partition count the streams were created with", &cfg.Query.Partitions)
	env.Duration("QUERY_TIMEOUT", "how long one request may take to read the order's events", &cfg.Query.Timeout)
	daemon.MapOps(env, &cfg.MetricsAddr, &cfg.Tracing)
}
