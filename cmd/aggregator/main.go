// Command aggregator is JetSource's command side: it consumes the command
// partitions, decides, appends events and publishes one result per command.
// Configuration comes from the environment; see Config.
package main

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"math/rand/v2"
	"os"
	"os/signal"
	"strings"
	"syscall"
	"time"

	"github.com/kelseyhightower/envconfig"
	"github.com/nats-io/nats.go/jetstream"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"

	"github.com/jetsource/jetsource/internal/aggregator"
	"github.com/jetsource/jetsource/internal/es"
	"github.com/jetsource/jetsource/internal/natsconn"
	"github.com/jetsource/jetsource/internal/opsserver"
	"github.com/jetsource/jetsource/internal/startup"
	"github.com/jetsource/jetsource/internal/tracing"
)

// Config is the aggregator's environment.
type Config struct {
	natsconn.Config

	Partitions      int           `envconfig:"JETSOURCE_PARTITIONS" default:"16"`
	Replicas        int           `envconfig:"JETSOURCE_REPLICAS" default:"1"`
	ResultsMaxAge   time.Duration `envconfig:"JETSOURCE_RESULTS_MAX_AGE" default:"24h"`
	DuplicateWindow time.Duration `envconfig:"JETSOURCE_DUPLICATE_WINDOW" default:"2m"`

	CacheSize     int           `envconfig:"AGGREGATOR_CACHE_SIZE" default:"10000"`
	SnapshotEvery int64         `envconfig:"AGGREGATOR_SNAPSHOT_EVERY" default:"100"`
	MaxRetries    int           `envconfig:"AGGREGATOR_MAX_RETRIES" default:"5"`
	AckWait       time.Duration `envconfig:"AGGREGATOR_ACK_WAIT" default:"30s"`
	DrainTimeout  time.Duration `envconfig:"AGGREGATOR_DRAIN_TIMEOUT" default:"10s"`
	ReplicaID     string        `envconfig:"AGGREGATOR_REPLICA_ID"`
	LeaseTTL      time.Duration `envconfig:"AGGREGATOR_LEASE_TTL" default:"5s"`

	MetricsAddr string     `envconfig:"METRICS_ADDR" default:":9090"`
	LogLevel    slog.Level `envconfig:"LOG_LEVEL" default:"info"`
	tracing.Exporter
}

// Validate reports every problem at once.
func (c Config) Validate() error {
	errs := []error{c.Config.Validate(), c.topology().Validate(), c.service().Validate()}
	if c.DrainTimeout <= 0 {
		errs = append(errs, fmt.Errorf("AGGREGATOR_DRAIN_TIMEOUT is %s; it must be positive", c.DrainTimeout))
	}
	for name, v := range map[string]int64{"AGGREGATOR_MAX_RETRIES": int64(c.MaxRetries), "AGGREGATOR_CACHE_SIZE": int64(c.CacheSize),
		"AGGREGATOR_SNAPSHOT_EVERY": c.SnapshotEvery} {
		if v < 0 {
			errs = append(errs, fmt.Errorf("%s is %d; it must not be negative (0 switches it off)", name, v))
		}
	}
	if c.LeaseTTL < time.Second {
		errs = append(errs, fmt.Errorf("AGGREGATOR_LEASE_TTL is %s; it must be at least 1s", c.LeaseTTL))
	}
	return errors.Join(errs...)
}

func (c Config) topology() es.Topology {
	return es.Topology{Partitions: c.Partitions, Replicas: c.Replicas, ResultsMaxAge: c.ResultsMaxAge, DuplicateWindow: c.DuplicateWindow}
}

func (c Config) service() aggregator.Config {
	// In the environment 0 switches a count off; in aggregator.Config 0
	// selects the default, which envconfig has filled in already.
	return aggregator.Config{
		Partitions:     c.Partitions,
		MaxRetries:     noneIfZero(c.MaxRetries),
		CacheSize:      noneIfZero(c.CacheSize),
		SnapshotEvery:  int64(noneIfZero(int(c.SnapshotEvery))),
		AckWait:        c.AckWait,
		MaxAckPending:  1000,
		DrainTimeout:   c.DrainTimeout,
		ReplicaID:      c.ReplicaID,
		LeaseTTL:       c.LeaseTTL,
		StreamReplicas: c.Replicas,
	}
}

// defaultReplicaID is the host name (the pod name in Kubernetes) with a
// random suffix, since a host may run several replicas.
func defaultReplicaID() string {
	host, _ := os.Hostname()
	return fmt.Sprintf("%s-%08x", strings.NewReplacer(".", "_").Replace(host), rand.Uint32())
}

func noneIfZero(n int) int {
	if n == 0 {
		return aggregator.None
	}
	return n
}

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGTERM, os.Interrupt)
	defer stop()
	if err := run(ctx); err != nil {
		fmt.Fprintln(os.Stderr, "aggregator:", err)
		os.Exit(1)
	}
}

func run(ctx context.Context) error {
	var cfg Config
	if err := envconfig.Process("", &cfg); err != nil {
		return fmt.Errorf("read configuration: %w", err)
	}
	if err := cfg.Validate(); err != nil {
		return fmt.Errorf("invalid configuration:\n%w", err)
	}
	log := slog.New(slog.NewJSONHandler(os.Stderr, &slog.HandlerOptions{Level: cfg.LogLevel}))

	nc, err := natsconn.Connect(cfg.Config, "jetsource-aggregator", log)
	if err != nil {
		return err
	}
	defer nc.Close()
	js, err := jetstream.New(nc)
	if err != nil {
		return fmt.Errorf("jetstream: %w", err)
	}
	tp, stopTracing, err := tracing.Provider(ctx, cfg.Exporter, "jetsource-aggregator")
	if err != nil {
		return err
	}
	defer func() {
		if err := stopTracing(context.Background()); err != nil {
			log.Warn("flush traces", "error", err)
		}
	}()
	reg := prometheus.NewRegistry()
	reg.MustRegister(collectors.NewGoCollector(), collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}))

	svcCfg := cfg.service()
	if svcCfg.ReplicaID == "" {
		svcCfg.ReplicaID = defaultReplicaID()
	}
	svcCfg.Logger = log
	svcCfg.Observer = aggregator.NewMetrics(reg)
	svcCfg.Tracer = tp
	svc, err := aggregator.New(js, svcCfg)
	if err != nil {
		return err
	}
	ops, err := opsserver.Listen(cfg.MetricsAddr, reg, svc.Ready, log)
	if err != nil {
		return err
	}
	stopOps := ops.Background()
	defer func() {
		// The ops server outlives the drain so probes and scrapes see it.
		if err := stopOps(); err != nil {
			log.Warn("ops server", "error", err)
		}
	}()

	// Liveness is served from here on; readiness waits for the streams.
	// A partition mismatch is fatal: waiting cannot fix it.
	if err := startup.Wait(ctx, log, "stream setup", func(err error) bool { return errors.Is(err, es.ErrPartitionMismatch) },
		func(ctx context.Context) error { return es.Setup(ctx, js, cfg.topology()) }); err != nil {
		return err
	}
	log.Info("aggregator started", "nats", nc.ConnectedUrlRedacted(), "partitions", cfg.Partitions, "metrics", ops.Addr())
	err = svc.Run(ctx)
	log.Info("aggregator stopped", "error", err)
	if err := nc.Drain(); err != nil {
		log.Warn("drain nats connection", "error", err)
	}
	return err
}
