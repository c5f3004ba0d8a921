// Command projector runs one read-model projection (--projection or
// PROJECTOR_PROJECTION: order_summary, order_history or sales_daily) over
// the JetStream event store into Postgres. Run several replicas of one
// projection to share its partitions. SIGTERM drains: the projector stops
// fetching, commits and acknowledges the batches in hand, releases its
// partitions and exits.
package main

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"flag"
	"fmt"
	"log/slog"
	"os"
	"os/signal"
	"strings"
	"syscall"

	"github.com/jackc/pgx/v5/pgxpool"
	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"

	"github.com/jetsource/jetsource/internal/es"
	"github.com/jetsource/jetsource/internal/natsconn"
	"github.com/jetsource/jetsource/internal/opsserver"
	"github.com/jetsource/jetsource/internal/projections"
	"github.com/jetsource/jetsource/internal/projections/migrations"
	"github.com/jetsource/jetsource/internal/projections/readmodel"
	"github.com/jetsource/jetsource/internal/startup"
	"github.com/jetsource/jetsource/internal/tracing"
)

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	cfg, err := loadConfig()
	log := slog.New(slog.NewJSONHandler(os.Stderr, &slog.HandlerOptions{Level: cfg.LogLevel}))
	if err == nil {
		err = run(ctx, os.Args[1:], cfg, log)
	}
	if errors.Is(err, flag.ErrHelp) {
		return
	}
	if err != nil {
		log.Error("projector failed", "error", err)
		os.Exit(1)
	}
}

// run wires the projector from cfg (the --projection flag in args overrides
// cfg.Projection) and runs it until ctx ends.
func run(ctx context.Context, args []string, cfg Config, log *slog.Logger) error {
	flags := flag.NewFlagSet("projector", flag.ContinueOnError)
	flags.StringVar(&cfg.Projection, "projection", cfg.Projection,
		"projection to run: "+strings.Join(readmodel.Names(), ", ")+" (default $PROJECTOR_PROJECTION)")
	if err := flags.Parse(args); err != nil {
		return err
	}
	if flags.NArg() > 0 {
		return fmt.Errorf("unexpected arguments %q", flags.Args())
	}
	if err := cfg.Validate(); err != nil {
		return fmt.Errorf("invalid configuration:\n%w", err)
	}
	proj, err := readmodel.New(cfg.Projection)
	if err != nil {
		return err
	}
	log = log.With("projection", proj.Name())

	nc, err := natsconn.Connect(cfg.Config, "jetsource-projector-"+proj.Name(), log)
	if err != nil {
		return err
	}
	defer nc.Close()
	js, err := jetstream.New(nc)
	if err != nil {
		return fmt.Errorf("jetstream: %w", err)
	}
	pool, err := newPool(ctx, cfg, proj.Name())
	if err != nil {
		return err
	}
	defer pool.Close()
	tp, stopTracing, err := tracing.Provider(ctx, cfg.Exporter, "jetsource-projector")
	if err != nil {
		return err
	}
	defer func() {
		if err := stopTracing(context.Background()); err != nil {
			log.Warn("flush traces", "error", err)
		}
	}()

	admin, err := projections.NewAdmin(pool, js, projections.AdminConfig{Schema: cfg.Schema, Partitions: cfg.Partitions, Logger: log})
	if err != nil {
		return err
	}
	reg := prometheus.NewRegistry()
	reg.MustRegister(collectors.NewGoCollector(), collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}))
	replica := replicaID()
	log = log.With("replica", replica)
	runner, err := projections.NewRunner(pool, js, projections.Config{
		Projection:  proj,
		Schema:      cfg.Schema,
		Partitions:  cfg.Partitions,
		BatchSize:   cfg.BatchSize,
		MaxAttempts: cfg.MaxAttempts,
		ReplicaID:   replica,
		Logger:      log,
		Observer:    projections.NewMetrics(reg, admin, proj.Name(), log),
		Tracer:      tp,
	})
	if err != nil {
		return err
	}
	if cfg.MetricsAddr != "" {
		ops, err := opsserver.Listen(cfg.MetricsAddr, reg, readiness(nc, js, pool, runner, cfg.Partitions), log)
		if err != nil {
			return err
		}
		stopOps := ops.Background()
		defer func() {
			if err := stopOps(); err != nil {
				log.Warn("ops server", "error", err)
			}
		}()
		log.Info("serving metrics and health checks", "addr", ops.Addr())
	}

	// Liveness is served from here on; wait for NATS, the streams and
	// Postgres, which may start after the projector.
	// A partition mismatch or an unusable schema name is fatal: waiting
	// cannot fix it.
	fatal := func(err error) bool {
		return errors.Is(err, es.ErrPartitionMismatch) || errors.Is(err, migrations.ErrSchemaName)
	}
	if err := startup.Wait(ctx, log, "event streams", fatal, func(ctx context.Context) error {
		return es.RequireStreams(ctx, js, cfg.Partitions)
	}); err != nil {
		return err
	}
	if err := startup.Wait(ctx, log, "schema migrations", fatal, func(ctx context.Context) error {
		applied, err := migrations.Apply(ctx, pool, cfg.Schema)
		if err == nil && len(applied) > 0 {
			log.Info("schema migrated", "schema", cfg.Schema, "versions", applied)
		}
		return err
	}); err != nil {
		return err
	}

	log.Info("projector started", "schema", cfg.Schema, "partitions", cfg.Partitions)
	if err := runner.Run(ctx); err != nil {
		return err
	}
	log.Info("projector drained")
	return nil
}

// replicaID names this replica in projection_replicas and the logs: the
// host name, which is the pod name in Kubernetes, and a random suffix, so
// that it stays unique where containers share a host name (host
// networking) and across restarts.
func replicaID() string {
	host, err := os.Hostname()
	if err != nil || host == "" {
		host = "projector"
	}
	b := make([]byte, 4)
	rand.Read(b) // never fails: it crashes the program instead
	return host + "-" + hex.EncodeToString(b)
}

func newPool(ctx context.Context, cfg Config, projection string) (*pgxpool.Pool, error) {
	poolCfg, err := pgxpool.ParseConfig(cfg.DatabaseURL)
	if err != nil {
		return nil, fmt.Errorf("DATABASE_URL: %w", err)
	}
	if !strings.Contains(cfg.DatabaseURL, "pool_max_conns") {
		// A transaction per owned partition at a time, plus room for the
		// checks between batches and the metrics.
		poolCfg.MaxConns = int32(min(cfg.Partitions, 8) + 3)
	}
	poolCfg.ConnConfig.RuntimeParams["application_name"] = "jetsource-projector-" + projection
	pool, err := pgxpool.NewWithConfig(ctx, poolCfg)
	if err != nil {
		return nil, fmt.Errorf("postgres pool: %w", err)
	}
	return pool, nil
}

// readiness is what /readyz asks: connected to NATS and Postgres, the
// streams present, the runner heartbeating and owning partitions.
func readiness(nc *nats.Conn, js jetstream.JetStream, pool *pgxpool.Pool, runner *projections.Runner, partitions int) opsserver.ReadyFunc {
	return func(ctx context.Context) error {
		if !nc.IsConnected() {
			return errors.New("not connected to NATS")
		}
		if err := pool.Ping(ctx); err != nil {
			return fmt.Errorf("postgres: %w", err)
		}
		if err := es.RequireStreams(ctx, js, partitions); err != nil {
			return err
		}
		if !runner.Ready() {
			return errors.New("projection runner not running or its lock session is not answering")
		}
		if len(runner.Owned()) == 0 {
			return errors.New("owns no partition yet")
		}
		return nil
	}
}
