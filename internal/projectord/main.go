// Package projectord is the projector process, wired once: NATS, the
// Postgres pool, the schema migrations, the runner of one read model,
// metrics, health checks and tracing, from one Config. cmd/projector, the
// dev stack and the tests all start a projector through Main.
package projectord

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"strings"

	"github.com/jackc/pgx/v5/pgxpool"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/jetsource/jetsource/contract"
	"github.com/jetsource/jetsource/internal/config"
	"github.com/jetsource/jetsource/internal/es"
	"github.com/jetsource/jetsource/internal/natsconn"
	"github.com/jetsource/jetsource/internal/opsserver"
	"github.com/jetsource/jetsource/internal/process"
	"github.com/jetsource/jetsource/internal/projections"
	"github.com/jetsource/jetsource/internal/projections/migrations"
	"github.com/jetsource/jetsource/internal/projections/readmodel"
	"github.com/jetsource/jetsource/internal/startup"
	"github.com/jetsource/jetsource/internal/tracing"
)

// Config is a projector process's configuration. DefaultConfig is the home
// of its defaults; cmd/projector maps the environment onto it.
type Config struct {
	NATS natsconn.Config
	// Projection names the read model to run (readmodel.Names); it has no
	// default.
	Projection string
	// DatabaseURL is the Postgres connection string; pool_max_conns in it
	// overrides the pool size the projector picks.
	DatabaseURL string
	// Runner is the runner's configuration; its Projection is the read
	// model Projection names.
	Runner projections.Config
	// Streams is the topology ORDERS_EVENTS must have: the projector
	// verifies the stream and never changes it.
	Streams es.Topology
	// Migrate applies the schema migrations at start-up, and so needs a
	// role that owns the schema. Without it the projector waits until the
	// schema has every migration it knows (orderctl migrate), and may run as
	// the projection's runtime role (deploy/postgres/roles.sql).
	Migrate bool
	// MetricsAddr is the host:port of /metrics, /healthz and /readyz (port
	// 0 picks one); empty turns the server off.
	MetricsAddr string
	Tracing     tracing.Exporter
}

// DefaultConfig returns the defaults of every part.
func DefaultConfig() Config {
	return Config{NATS: natsconn.DefaultConfig(), Runner: projections.DefaultConfig(), Streams: es.DefaultTopology(), Migrate: true,
		MetricsAddr: ":9090"}
}

// Validate reports every problem at once, as config.FieldErrors named by
// their path in Config.
func (c Config) Validate() error {
	errs := []error{config.Nest("NATS", c.NATS.Validate()), opsserver.ValidateAddr("MetricsAddr", c.MetricsAddr)}
	p, err := readmodel.New(c.Projection)
	if err != nil {
		errs = append(errs, config.Invalid("Projection", c.Projection, "must be one of %s", strings.Join(readmodel.Names(), ", ")))
		p = readmodel.OrderSummary{} // to check the rest of Runner
	}
	runner := c.Runner
	runner.Projection = p
	errs = append(errs, config.Nest("Runner", runner.Validate()), config.Nest("Streams", c.Streams.Validate()))
	if c.Runner.Partitions != c.Streams.Partitions {
		errs = append(errs, config.Invalid("Runner.Partitions", c.Runner.Partitions,
			"must equal the streams' partition count (%d)", c.Streams.Partitions))
	}
	if c.DatabaseURL == "" {
		errs = append(errs, config.Invalid("DatabaseURL", c.DatabaseURL, "must be set to the read models' database"))
	} else if _, err := pgxpool.ParseConfig(c.DatabaseURL); err != nil {
		errs = append(errs, config.Invalid("DatabaseURL", "(not shown)", "is not a Postgres URL or connection string"))
	}
	return errors.Join(errs...)
}

// Main is one projector process. Run starts it, Done reports that it
// stopped on its own, Close drains and stops it.
type Main struct {
	cfg Config
	log *slog.Logger

	proc       *process.Process
	pool       *pgxpool.Pool
	stopRunner context.CancelFunc
	done       chan struct{}
	err        error // the runner's, set before done is closed
}

// NewMain checks cfg and returns a Main that logs to log, with the
// projection's name and the replica id on every line.
func NewMain(cfg Config, log *slog.Logger) (*Main, error) {
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	cfg.Runner.Projection, _ = readmodel.New(cfg.Projection) // a known name
	log = log.With("projection", cfg.Projection, "replica", cfg.Runner.ReplicaID)
	return &Main{cfg: cfg, log: log, done: make(chan struct{})}, nil
}

// Run connects to NATS and Postgres, serves /healthz at once and /readyz,
// waits for the event stream and the database, verifies the stream,
// migrates the schema (or waits for it to be migrated) and starts
// projecting. It returns once the projector runs, or with what keeps it
// from running (ctx bounds the wait); call Close in either case.
func (m *Main) Run(ctx context.Context) error {
	cfg, name := m.cfg, m.cfg.Projection
	proc, err := process.Open(ctx, cfg.NATS, "jetsource-projector-"+name, cfg.Tracing, "jetsource-projector", m.log)
	m.proc = proc
	if err != nil {
		return err
	}
	js := proc.JS
	if m.pool, err = newPool(ctx, cfg, name); err != nil {
		return err
	}

	schema, partitions := cfg.Runner.Schema, cfg.Runner.Partitions
	admin, err := projections.NewAdmin(m.pool, js, projections.AdminConfig{Schema: schema, Partitions: partitions, Logger: m.log})
	if err != nil {
		return err
	}
	runCfg := cfg.Runner
	runCfg.Logger, runCfg.Observer, runCfg.Tracer = m.log, projections.NewMetrics(proc.Registry, admin, name, m.log), proc.Tracer
	runner, err := projections.NewRunner(m.pool, js, runCfg)
	if err != nil {
		return err
	}
	if err := proc.Serve(cfg.MetricsAddr, m.readiness(js, runner)); err != nil {
		return err
	}

	if err := m.waitForDependencies(ctx, js); err != nil {
		return err
	}
	run, stop := context.WithCancel(context.WithoutCancel(ctx))
	m.stopRunner = stop
	go func() {
		defer close(m.done)
		m.err = runner.Run(run)
	}()
	m.log.Info("projector started", "schema", schema, "partitions", partitions, "metrics", m.MetricsAddr())
	return nil
}

// waitForDependencies waits for NATS, the event stream and Postgres, which
// may start after the projector, verifies the stream, and migrates the
// schema or waits until it is migrated. A stream that differs from the
// configuration (the partition count, say) or an unusable schema name is
// fatal: waiting cannot fix it.
func (m *Main) waitForDependencies(ctx context.Context, js jetstream.JetStream) error {
	schema := m.cfg.Runner.Schema
	fatal := func(err error) bool {
		return errors.Is(err, es.ErrStreamMismatch) || errors.Is(err, migrations.ErrSchemaName)
	}
	if err := startup.Wait(ctx, m.log, "event stream", fatal, func(ctx context.Context) error {
		return es.Verify(ctx, js, m.cfg.Streams, contract.EventsStream)
	}); err != nil {
		return err
	}
	if !m.cfg.Migrate {
		return startup.Wait(ctx, m.log, "schema migrations (orderctl migrate)", fatal, func(ctx context.Context) error {
			return migrations.Check(ctx, m.pool, schema)
		})
	}
	return startup.Wait(ctx, m.log, "schema migrations", fatal, func(ctx context.Context) error {
		applied, err := migrations.Apply(ctx, m.pool, schema)
		if err != nil {
			return err
		}
		if len(applied) > 0 {
			m.log.Info("schema migrated", "schema", schema, "versions", applied)
		}
		p := m.cfg.Runner.Projection
		_, err = migrations.Grant(ctx, m.pool, schema, p.Name(), p.Tables())
		return err
	})
}

// readiness is what /readyz asks: connected to NATS and Postgres, the
// event stream present, the runner heartbeating and owning partitions.
func (m *Main) readiness(js jetstream.JetStream, runner *projections.Runner) opsserver.ReadyFunc {
	return func(ctx context.Context) error {
		if !m.proc.NC.IsConnected() {
			return errors.New("not connected to NATS")
		}
		if err := m.pool.Ping(ctx); err != nil {
			return fmt.Errorf("postgres: %w", err)
		}
		if err := es.RequireStreams(ctx, js, m.cfg.Runner.Partitions, contract.EventsStream); err != nil {
			return err
		}
		if err := runner.Loss(); err != nil {
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

// newPool opens the projector's pool: a transaction per owned partition at
// a time, plus room for the checks between batches and the metrics, unless
// the URL sets pool_max_conns.
func newPool(ctx context.Context, cfg Config, projection string) (*pgxpool.Pool, error) {
	poolCfg, err := pgxpool.ParseConfig(cfg.DatabaseURL)
	if err != nil {
		return nil, fmt.Errorf("DATABASE_URL: %w", err)
	}
	if !strings.Contains(cfg.DatabaseURL, "pool_max_conns") {
		poolCfg.MaxConns = int32(min(cfg.Runner.Partitions, 8) + 3)
	}
	poolCfg.ConnConfig.RuntimeParams["application_name"] = "jetsource-projector-" + projection
	pool, err := pgxpool.NewWithConfig(ctx, poolCfg)
	if err != nil {
		return nil, fmt.Errorf("postgres pool: %w", err)
	}
	return pool, nil
}

// MetricsAddr is the address of /metrics, /healthz and /readyz, once Run
// has started serving them; empty otherwise.
func (m *Main) MetricsAddr() string { return m.proc.MetricsAddr() }

// Done is closed when the runner stops: on its own (Err says why), or
// after Close.
func (m *Main) Done() <-chan struct{} { return m.done }

// Err is why the runner stopped, once Done is closed.
func (m *Main) Err() error { return m.err }

// Close drains: the runner stops fetching, commits and acknowledges the
// batches in hand, releases its partitions and leaves the replica table;
// then the connections close, the ops server stops and traces are
// flushed. It returns what went wrong on the way.
func (m *Main) Close() error {
	if m.stopRunner != nil {
		m.stopRunner()
		<-m.done
		m.log.Info("projector drained", "error", m.err)
	}
	if m.pool != nil {
		m.pool.Close()
	}
	return m.proc.Close()
}
