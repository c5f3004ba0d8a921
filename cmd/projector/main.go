// Command projector runs one read-model projection (--projection or
// PROJECTOR_PROJECTION: order_summary, order_history or sales_daily) over
// the JetStream event store into Postgres. Run several replicas of one
// projection to share its partitions. SIGTERM drains: the projector stops
// fetching, commits and acknowledges the batches in hand, releases its
// partitions and exits.
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"os"
	"os/signal"
	"strings"
	"syscall"
	"time"

	"github.com/jackc/pgx/v5/pgxpool"
	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/jetsource/jetsource/internal/es"
	"github.com/jetsource/jetsource/internal/projections"
	"github.com/jetsource/jetsource/internal/projections/migrations"
	"github.com/jetsource/jetsource/internal/projections/readmodel"
)

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	log := slog.New(slog.NewJSONHandler(os.Stderr, nil))
	cfg, err := loadConfig()
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

	nc, err := nats.Connect(cfg.NATSURL, natsOptions(cfg, log)...)
	if err != nil {
		return fmt.Errorf("connect to NATS at %s: %w", cfg.NATSURL, err)
	}
	defer nc.Close()
	js, err := jetstream.New(nc)
	if err != nil {
		return fmt.Errorf("jetstream: %w", err)
	}
	if err := es.RequireStreams(ctx, js, cfg.Partitions); err != nil {
		return fmt.Errorf("event streams: %w", err)
	}

	poolCfg, err := pgxpool.ParseConfig(cfg.DatabaseURL)
	if err != nil {
		return fmt.Errorf("DATABASE_URL: %w", err)
	}
	if !strings.Contains(cfg.DatabaseURL, "pool_max_conns") {
		// A transaction per owned partition at a time, plus room for the
		// checks between batches.
		poolCfg.MaxConns = int32(min(cfg.Partitions, 8) + 2)
	}
	poolCfg.ConnConfig.RuntimeParams["application_name"] = "jetsource-projector-" + proj.Name()
	pool, err := pgxpool.NewWithConfig(ctx, poolCfg)
	if err != nil {
		return fmt.Errorf("connect to Postgres: %w", err)
	}
	defer pool.Close()
	applied, err := migrations.Apply(ctx, pool, cfg.Schema)
	if err != nil {
		return err
	}
	if len(applied) > 0 {
		log.Info("schema migrated", "schema", cfg.Schema, "versions", applied)
	}

	runner, err := projections.NewRunner(pool, js, projections.Config{
		Projection:  proj,
		Schema:      cfg.Schema,
		Partitions:  cfg.Partitions,
		BatchSize:   cfg.BatchSize,
		MaxAttempts: cfg.MaxAttempts,
		Logger:      log,
	})
	if err != nil {
		return err
	}
	if cfg.MetricsAddr != "" {
		stopServer, err := serveHealth(cfg.MetricsAddr, runner, log)
		if err != nil {
			return err
		}
		defer stopServer()
	}
	log.Info("projector started", "schema", cfg.Schema, "partitions", cfg.Partitions)
	if err := runner.Run(ctx); err != nil {
		return err
	}
	log.Info("projector drained")
	return nil
}

func natsOptions(cfg Config, log *slog.Logger) []nats.Option {
	opts := []nats.Option{
		nats.Name("jetsource-projector-" + cfg.Projection),
		nats.MaxReconnects(-1),
		nats.DisconnectErrHandler(func(_ *nats.Conn, err error) { log.Warn("NATS disconnected", "error", err) }),
		nats.ReconnectHandler(func(c *nats.Conn) { log.Info("NATS reconnected", "server", c.ConnectedUrlRedacted()) }),
	}
	if cfg.NATSCreds != "" {
		opts = append(opts, nats.UserCredentials(cfg.NATSCreds))
	}
	if cfg.NATSTLSCert != "" {
		opts = append(opts, nats.ClientCert(cfg.NATSTLSCert, cfg.NATSTLSKey))
	}
	if cfg.NATSTLSCA != "" {
		opts = append(opts, nats.RootCAs(cfg.NATSTLSCA))
	}
	return opts
}

// ready is what /readyz asks.
type ready interface{ Ready() bool }

// serveHealth serves /healthz (the process is up) and /readyz (the runner
// holds its lock session and heartbeats) until stop is called.
func serveHealth(addr string, r ready, log *slog.Logger) (stop func(), err error) {
	ln, err := net.Listen("tcp", addr)
	if err != nil {
		return nil, fmt.Errorf("METRICS_ADDR: %w", err)
	}
	mux := http.NewServeMux()
	mux.HandleFunc("GET /healthz", func(w http.ResponseWriter, _ *http.Request) {
		fmt.Fprintln(w, "ok")
	})
	mux.HandleFunc("GET /readyz", func(w http.ResponseWriter, _ *http.Request) {
		if !r.Ready() {
			http.Error(w, "not ready", http.StatusServiceUnavailable)
			return
		}
		fmt.Fprintln(w, "ready")
	})
	srv := &http.Server{Handler: mux, ReadHeaderTimeout: 5 * time.Second}
	go func() {
		if err := srv.Serve(ln); err != nil && !errors.Is(err, http.ErrServerClosed) {
			log.Error("health server failed", "error", err)
		}
	}()
	log.Info("serving health checks", "addr", ln.Addr().String())
	return func() {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		srv.Shutdown(ctx)
	}, nil
}
