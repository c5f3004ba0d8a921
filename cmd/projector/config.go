package main

import (
	"errors"
	"fmt"
	"log/slog"
	"net"
	"strings"

	"github.com/jackc/pgx/v5/pgxpool"
	"github.com/kelseyhightower/envconfig"

	"github.com/jetsource/jetsource/internal/natsconn"
	"github.com/jetsource/jetsource/internal/projections"
	"github.com/jetsource/jetsource/internal/projections/migrations"
	"github.com/jetsource/jetsource/internal/projections/readmodel"
	"github.com/jetsource/jetsource/internal/tracing"
)

// Config is the projector's configuration, read from the environment.
type Config struct {
	natsconn.Config
	tracing.Exporter

	// Projection is the read model this deployment projects; the
	// --projection flag overrides it.
	Projection string `envconfig:"PROJECTOR_PROJECTION"`
	// DatabaseURL is the Postgres connection string; pool_max_conns in it
	// overrides the pool size the projector picks.
	DatabaseURL string `envconfig:"DATABASE_URL"`
	// Schema holds the read-model tables.
	Schema string `envconfig:"JETSOURCE_SCHEMA" default:"jetsource"`
	// Partitions must match the count the streams were created with.
	Partitions  int `envconfig:"JETSOURCE_PARTITIONS" default:"16"`
	BatchSize   int `envconfig:"PROJECTOR_BATCH_SIZE" default:"500"`
	MaxAttempts int `envconfig:"PROJECTOR_MAX_ATTEMPTS" default:"5"`
	// MetricsAddr is the host:port of /metrics, /healthz and /readyz;
	// empty turns the server off.
	MetricsAddr string     `envconfig:"METRICS_ADDR" default:":9090"`
	LogLevel    slog.Level `envconfig:"LOG_LEVEL" default:"info"`
}

// loadConfig reads the environment. It is the only place that does.
func loadConfig() (Config, error) {
	var c Config
	if err := envconfig.Process("", &c); err != nil {
		return Config{}, fmt.Errorf("read configuration: %w", err)
	}
	return c, nil
}

// Validate reports every problem at once.
func (c Config) Validate() error {
	errs := []error{c.Config.Validate()}
	if c.Projection == "" {
		errs = append(errs, fmt.Errorf("no projection: set PROJECTOR_PROJECTION or --projection to one of %s",
			strings.Join(readmodel.Names(), ", ")))
	} else if _, err := readmodel.New(c.Projection); err != nil {
		errs = append(errs, fmt.Errorf("PROJECTOR_PROJECTION: %w", err))
	}
	if c.DatabaseURL == "" {
		errs = append(errs, errors.New("DATABASE_URL is required"))
	} else if _, err := pgxpool.ParseConfig(c.DatabaseURL); err != nil {
		errs = append(errs, fmt.Errorf("DATABASE_URL: %w", err))
	}
	if err := migrations.CheckSchemaName(c.Schema); err != nil {
		errs = append(errs, fmt.Errorf("JETSOURCE_SCHEMA: %w", err))
	}
	if c.Partitions < 1 || c.Partitions > 1024 {
		errs = append(errs, fmt.Errorf("JETSOURCE_PARTITIONS is %d; it must be between 1 and 1024", c.Partitions))
	}
	if c.BatchSize < 1 || c.BatchSize > projections.MaxBatchSize {
		errs = append(errs, fmt.Errorf("PROJECTOR_BATCH_SIZE is %d; it must be between 1 and %d", c.BatchSize, projections.MaxBatchSize))
	}
	if c.MaxAttempts < 1 || c.MaxAttempts > 100 {
		errs = append(errs, fmt.Errorf("PROJECTOR_MAX_ATTEMPTS is %d; it must be between 1 and 100", c.MaxAttempts))
	}
	if c.MetricsAddr != "" {
		if _, _, err := net.SplitHostPort(c.MetricsAddr); err != nil {
			errs = append(errs, fmt.Errorf("METRICS_ADDR: %w", err))
		}
	}
	return errors.Join(errs...)
}
