// Command projector runs one read-model projection over the JetStream
// event store into Postgres. Run several replicas of one projection to
// share its partitions. It maps the environment and --projection onto
// projectord.Config; projectord wires and runs it. SIGTERM drains it.
package main

import (
	"context"
	"io"
	"os"
	"os/signal"
	"strings"
	"syscall"

	"github.com/jetsource/jetsource/internal/config"
	"github.com/jetsource/jetsource/internal/daemon"
	"github.com/jetsource/jetsource/internal/projections/readmodel"
	"github.com/jetsource/jetsource/internal/projectord"
)

var synopsis = `projector — projects JetSource's events into one Postgres read model

Usage:
  projector [--projection NAME] [--help] [--version]

Runs one projection (` + strings.Join(readmodel.Names(), ", ") + `) with the other replicas
of that projection, until SIGTERM, when it commits the batches in hand, releases its
partitions and exits. Configuration comes from the environment:
`

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	os.Exit(run(ctx, os.Args[1:], os.LookupEnv, os.Stdout, os.Stderr))
}

// run runs the projector until ctx ends and returns the exit code.
func run(ctx context.Context, args []string, lookup func(string) (string, bool), stdout, stderr io.Writer) int {
	cfg := projectord.DefaultConfig()
	b := daemon.New("projector", synopsis, args, lookup, &cfg)
	b.SetOutput(stdout, stderr)
	mapEnv(b.Env, &cfg)
	b.StringFlag("projection", "projection to run (overrides PROJECTOR_PROJECTION)", &cfg.Projection)
	return b.Run(ctx, func() (daemon.Service, error) { return projectord.NewMain(cfg, b.Logger()) })
}

// mapEnv maps the environment onto cfg; the defaults are cfg's.
func mapEnv(env *config.Env, cfg *projectord.Config) {
	daemon.MapNATS(env, &cfg.NATS)
	env.String("PROJECTOR_PROJECTION", "the read model: "+strings.Join(readmodel.Names(), ", ")+"; or --projection", &cfg.Projection)
	env.URL("DATABASE_URL", "PostgreSQL URL of the read models (required); pool_max_conns in it sets the pool size", &cfg.DatabaseURL)
	env.String("JETSOURCE_SCHEMA", "schema of the read-model tables, cursors and dead letters", &cfg.Runner.Schema)
	env.Int("JETSOURCE_PARTITIONS", "partition count the streams were created with", &cfg.Runner.Partitions, &cfg.Streams.Partitions)
	env.Int("JETSOURCE_REPLICAS", "replicas of the streams, as created (the projector verifies ORDERS_EVENTS)", &cfg.Streams.Replicas)
	env.Duration("JETSOURCE_DUPLICATE_WINDOW", "de-duplication window of the streams, as created", &cfg.Streams.DuplicateWindow)
	env.Bool("PROJECTOR_MIGRATE", "apply the schema migrations at start-up (needs the schema's owner); false: wait for orderctl migrate",
		&cfg.Migrate)
	env.Int("PROJECTOR_BATCH_SIZE", "most events applied in one transaction with the cursor", &cfg.Runner.BatchSize)
	env.Int("PROJECTOR_MAX_ATTEMPTS", "failures before an event is dead-lettered and its order's later events are parked",
		&cfg.Runner.MaxAttempts)
	daemon.MapOps(env, &cfg.MetricsAddr, &cfg.Tracing)
}
