// Command aggregator is JetSource's command side: it consumes the command
// partitions, decides, appends events and publishes one result per command.
// It maps the environment onto aggregatord.Config; aggregatord wires and
// runs it. SIGTERM drains it.
package main

import (
	"context"
	"io"
	"os"
	"os/signal"
	"syscall"

	"github.com/jetsource/jetsource/internal/aggregatord"
	"github.com/jetsource/jetsource/internal/config"
	"github.com/jetsource/jetsource/internal/daemon"
)

const synopsis = `aggregator — JetSource's command side

Usage:
  aggregator [--help] [--version]

Consumes the command partitions (shared with the other replicas through
leases), decides, appends the events and publishes one result per command,
until SIGTERM, when it drains. Configuration comes from the environment:
`

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	os.Exit(run(ctx, os.Args[1:], os.LookupEnv, os.Stdout, os.Stderr))
}

// run runs the aggregator until ctx ends and returns the exit code.
func run(ctx context.Context, args []string, lookup func(string) (string, bool), stdout, stderr io.Writer) int {
	cfg := aggregatord.DefaultConfig()
	b := daemon.New("aggregator", synopsis, args, lookup, &cfg)
	b.SetOutput(stdout, stderr)
	mapEnv(b.Env, &cfg)
	return b.Run(ctx, func() (daemon.Service, error) { return aggregatord.NewMain(cfg, b.Logger()) })
}

// mapEnv maps the environment onto cfg; the defaults are cfg's.
func mapEnv(env *config.Env, cfg *aggregatord.Config) {
	daemon.MapNATS(env, &cfg.NATS)
	env.Int("JETSOURCE_PARTITIONS", "partition count; fixed when the streams are created and recorded in their metadata",
		&cfg.Streams.Partitions, &cfg.Aggregator.Partitions)
	env.Int("JETSOURCE_REPLICAS", "stream replicas: 1 in development, 3 or 5 in production",
		&cfg.Streams.Replicas)
	env.Duration("JETSOURCE_RESULTS_MAX_AGE", "how long results are kept (and rejections remembered)", &cfg.Streams.ResultsMaxAge)
	env.Duration("JETSOURCE_DUPLICATE_WINDOW", "JetStream de-duplication window for Nats-Msg-Id (at least 2m)", &cfg.Streams.DuplicateWindow)
	env.Int("AGGREGATOR_CACHE_SIZE", "orders kept in the in-memory LRU cache (0: no cache)", &cfg.Aggregator.CacheSize)
	env.Int64("AGGREGATOR_SNAPSHOT_EVERY", "snapshot an order every this many events (0: never)", &cfg.Aggregator.SnapshotEvery)
	env.Int("AGGREGATOR_MAX_RETRIES", "reloads after concurrency conflicts before a command is rejected with conflict (0: none)",
		&cfg.Aggregator.MaxRetries)
	env.Duration("AGGREGATOR_ACK_WAIT", "JetStream redelivers a command not acknowledged within this time", &cfg.Aggregator.AckWait)
	env.Int("AGGREGATOR_MAX_IN_FLIGHT", "commands of one partition handled at once; one order's always one at a time, in publish order",
		&cfg.Aggregator.MaxInFlight)
	env.Duration("AGGREGATOR_DRAIN_TIMEOUT", "at shutdown, how long the commands in hand may take to finish", &cfg.Aggregator.DrainTimeout)
	env.String("AGGREGATOR_REPLICA_ID", "this replica's name among the aggregators; unique among running replicas (default: host name and a random suffix)",
		&cfg.Aggregator.ReplicaID)
	env.Duration("AGGREGATOR_LEASE_TTL", "a dead replica's partitions are taken over at most this long after its last lease renewal",
		&cfg.Aggregator.LeaseTTL, &cfg.Streams.LeaseTTL)
	daemon.MapOps(env, &cfg.MetricsAddr, &cfg.Tracing)
}
