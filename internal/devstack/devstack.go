// Package devstack is the all-in-one dev stack of `orderctl dev` (make
// run): an embedded NATS server, a local Postgres (unless DatabaseURL names
// one), the streams and the schema, and the aggregator, a projector per
// read model and the query service, each started through its composition
// root (aggregatord, projectord, queryd) as its binary would be, in this
// process.
package devstack

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"
	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/jetsource/jetsource/contract"
	"github.com/jetsource/jetsource/internal/aggregatord"
	"github.com/jetsource/jetsource/internal/config"
	"github.com/jetsource/jetsource/internal/es"
	"github.com/jetsource/jetsource/internal/projections"
	"github.com/jetsource/jetsource/internal/projections/migrations"
	"github.com/jetsource/jetsource/internal/projections/readmodel"
	"github.com/jetsource/jetsource/internal/projectord"
	"github.com/jetsource/jetsource/internal/queryd"
)

// BatchWait is the projectors' batch window in the dev stack. At the
// production default (5 ms) nearly every event gets a transaction of its
// own, and with three projectors, Postgres and the aggregator on one small
// machine, Postgres starves the aggregator: on 2 vCPUs the demo ran at 540
// commands/s with 5 ms and 2,500 with 50 ms. Read-your-writes waits up to
// this much longer.
const BatchWait = 50 * time.Millisecond

// Config is a dev stack. DefaultConfig is the home of its defaults.
type Config struct {
	// Data holds the stack's NATS data, Postgres cluster and log; the next
	// run reuses them.
	Data string
	// NATSPort is NATS's port on 127.0.0.1; 0 picks a free one.
	NATSPort int
	// PGPort is the local Postgres's port on 127.0.0.1 if it is free, else
	// any free one; 0 picks a free one. Unused with DatabaseURL.
	PGPort int
	// DatabaseURL names a Postgres to use instead of a local one.
	DatabaseURL string
	// Schema holds the read models.
	Schema string
	// Partitions is the streams' partition count.
	Partitions int
	// Reset wipes the data first (and with DatabaseURL, drops Schema).
	Reset bool
	// Out receives what the stack starts and stops, for a person to read.
	Out io.Writer
}

// DefaultConfig returns the defaults: data in .data, NATS on 4222, Postgres
// on 5433.
func DefaultConfig() Config {
	return Config{Data: ".data", NATSPort: 4222, PGPort: 5433, Schema: projections.DefaultSchema,
		Partitions: contract.DefaultPartitions, Out: io.Discard}
}

// Validate reports every problem at once, as config.FieldErrors.
func (c Config) Validate() error {
	errs := []error{es.ValidatePartitions("Partitions", c.Partitions)}
	for field, port := range map[string]int{"NATSPort": c.NATSPort, "PGPort": c.PGPort} {
		if port < 0 || port > 65535 {
			errs = append(errs, config.Invalid(field, port, "must be a port, 0 to 65535 (0: any free port)"))
		}
	}
	errs = append(errs, migrations.ValidateSchema("Schema", c.Schema))
	if c.Data == "" {
		errs = append(errs, config.Invalid("Data", c.Data, "must name a directory"))
	}
	return errors.Join(errs...)
}

// Stack is a running dev stack. Run starts it, Done reports that a service
// stopped on its own, Close stops everything.
type Stack struct {
	cfg Config
	log *slog.Logger

	natsURL string
	dbURL   string
	js      jetstream.JetStream
	pool    *pgxpool.Pool // the stack's own, for the demo, the overview and Admin
	admin   *projections.Admin

	mu      sync.Mutex
	closing bool           // Close has begun: services stop because of it
	done    chan struct{}  // closed when a service stops on its own
	err     error          // that service's
	stops   []func() error // run in reverse by Close
}

// New checks cfg and returns a stack to Run.
func New(cfg Config) (*Stack, error) {
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	return &Stack{cfg: cfg, done: make(chan struct{})}, nil
}

func (st *Stack) onStop(fn func() error) { st.stops = append(st.stops, fn) }

func (st *Stack) printf(format string, args ...any) { fmt.Fprintf(st.cfg.Out, format, args...) }

// Run starts NATS, Postgres, the streams, the schema and the services, and
// returns once they run; call Close in either case.
func (st *Stack) Run(ctx context.Context) error {
	data := st.cfg.Data
	if err := os.MkdirAll(data, 0o755); err != nil {
		return fmt.Errorf("create the data directory: %w", err)
	}
	if err := st.lock(data); err != nil {
		return err
	}
	pgDir, pgBlocked, err := postgresDir(data)
	if err != nil {
		return err
	}
	// The instructions of an earlier run export DATABASE_URL: in that shell
	// it names this stack's own Postgres, stopped now. Start it.
	ownDB := st.cfg.DatabaseURL != "" && st.cfg.DatabaseURL == st.ownDatabaseURL()
	if ownDB {
		st.cfg.DatabaseURL = ""
	}
	if st.cfg.Reset {
		if err := st.wipe(ctx, data, pgDir); err != nil {
			return err
		}
	}
	if err := st.openLog(); err != nil {
		return err
	}
	reused := ""
	if _, err := os.Stat(filepath.Join(data, "nats")); err == nil {
		reused = " (kept from the last run; --reset wipes it)"
	}
	st.printf("JetSource dev stack, data in %s%s\n", data, reused)
	if err := st.startNATS(filepath.Join(data, "nats")); err != nil {
		return err
	}
	if err := st.startPostgres(ctx, pgDir, pgBlocked, ownDB); err != nil {
		return err
	}
	if err := st.prepare(ctx); err != nil {
		return err
	}
	if err := st.startServices(ctx); err != nil {
		return err
	}
	st.printf("  %-11s %s (JSON)\n", "logs", st.LogPath())
	return nil
}

func (st *Stack) openLog() error {
	f, err := os.OpenFile(st.LogPath(), os.O_CREATE|os.O_APPEND|os.O_WRONLY, 0o644)
	if err != nil {
		return fmt.Errorf("open the log: %w", err)
	}
	st.onStop(f.Close)
	st.log = slog.New(slog.NewJSONHandler(f, nil))
	st.log.Info("dev stack starting", "data", st.cfg.Data, "pid", os.Getpid())
	return nil
}

// prepare creates the streams, the lease bucket and the schema, as the
// operator does in production (orderctl streams apply, orderctl migrate),
// and opens the stack's own connections.
func (st *Stack) prepare(ctx context.Context) error {
	nc, err := nats.Connect(st.natsURL, nats.Name("jetsource-dev"), nats.MaxReconnects(-1))
	if err != nil {
		return fmt.Errorf("connect to nats: %w", err)
	}
	st.onStop(func() error { nc.Close(); return nil })
	if st.js, err = jetstream.New(nc); err != nil {
		return fmt.Errorf("jetstream: %w", err)
	}
	topology := es.DefaultTopology()
	topology.Partitions = st.cfg.Partitions
	err = es.Setup(ctx, st.js, topology)
	if errors.Is(err, es.ErrPartitionMismatch) {
		return fmt.Errorf("%w; start afresh with --reset, or set JETSOURCE_PARTITIONS to match", err)
	}
	if err != nil {
		return err
	}
	poolCfg, err := pgxpool.ParseConfig(st.dbURL)
	if err != nil {
		return fmt.Errorf("database URL: %w", err)
	}
	poolCfg.MaxConns = 4
	poolCfg.ConnConfig.RuntimeParams["application_name"] = "jetsource-dev"
	if st.pool, err = pgxpool.NewWithConfig(ctx, poolCfg); err != nil {
		return fmt.Errorf("postgres pool: %w", err)
	}
	st.onStop(func() error { st.pool.Close(); return nil })
	if _, err := migrations.Apply(ctx, st.pool, st.cfg.Schema); err != nil {
		return databaseURLError(st.cfg.DatabaseURL, err)
	}
	if err := st.checkCursors(ctx); err != nil {
		return err
	}
	st.admin, err = projections.NewAdmin(st.pool, st.js, projections.AdminConfig{Schema: st.cfg.Schema, Partitions: st.cfg.Partitions, Logger: st.log})
	if err != nil {
		return err
	}
	events, err := st.js.Stream(ctx, contract.EventsStream)
	if err != nil {
		return err
	}
	stored := ""
	if n := events.CachedInfo().State.Msgs; n > 0 {
		stored = fmt.Sprintf("; %d events stored", n)
	}
	st.printf("  %-11s ORDERS_COMMANDS, ORDERS_EVENTS, ORDERS_SNAPSHOTS, ORDERS_RESULTS: %d partitions, R1%s\n", "streams", st.cfg.Partitions, stored)
	st.printf("  %-11s Postgres schema %s\n", "read models", st.cfg.Schema)
	return nil
}

// checkCursors refuses read models that are ahead of the event store: they
// were built from other events (the NATS data was wiped, the database was
// not), and the runners would skip every new event up to their cursors.
func (st *Stack) checkCursors(ctx context.Context) error {
	var cursor int64
	if err := st.pool.QueryRow(ctx, "SELECT coalesce(max(last_sequence), 0) FROM "+
		pgx.Identifier{st.cfg.Schema, "projection_checkpoints"}.Sanitize()).Scan(&cursor); err != nil {
		return fmt.Errorf("read the projections' cursors: %w", err)
	}
	events, err := st.js.Stream(ctx, contract.EventsStream)
	if err != nil {
		return err
	}
	if last := events.CachedInfo().State.LastSeq; uint64(cursor) > last {
		return fmt.Errorf("the read models in schema %s are at stream sequence %d, but the event store ends at %d: they were built from other events; start afresh with --reset",
			st.cfg.Schema, cursor, last)
	}
	return nil
}

// service is a started composition root.
type service interface {
	Done() <-chan struct{}
	Err() error
	Close() error
}

// startServices starts the aggregator, a projector per read model and the
// query service through their composition roots, each with metrics on a
// free port.
func (st *Stack) startServices(ctx context.Context) error {
	var started []service
	// The services stop first when Close runs, so that each drains before
	// what it depends on goes away.
	st.onStop(func() error {
		var errs []error
		for _, s := range started {
			errs = append(errs, s.Close())
		}
		st.printf("  aggregator, projectors and query stopped\n")
		return errors.Join(errs...)
	})

	acfg := aggregatord.DefaultConfig()
	acfg.NATS.URL, acfg.MetricsAddr = st.natsURL, "127.0.0.1:0"
	acfg.Streams.Partitions, acfg.Aggregator.Partitions = st.cfg.Partitions, st.cfg.Partitions
	agg, err := aggregatord.NewMain(acfg, st.log.With("service", "aggregator"))
	if err != nil {
		return err
	}
	started = append(started, agg)
	if err := agg.Run(ctx); err != nil {
		return err
	}
	metrics := []string{"aggregator http://" + agg.MetricsAddr() + "/metrics"}
	for _, name := range readmodel.Names() {
		pcfg := projectord.DefaultConfig()
		pcfg.NATS.URL, pcfg.DatabaseURL, pcfg.Projection, pcfg.MetricsAddr = st.natsURL, st.dbURL, name, "127.0.0.1:0"
		pcfg.Runner.Schema, pcfg.Runner.Partitions, pcfg.Runner.BatchWait = st.cfg.Schema, st.cfg.Partitions, BatchWait
		pcfg.Streams.Partitions = st.cfg.Partitions
		p, err := projectord.NewMain(pcfg, st.log.With("service", "projector"))
		if err != nil {
			return err
		}
		started = append(started, p)
		if err := p.Run(ctx); err != nil {
			return err
		}
		metrics = append(metrics, name+" http://"+p.MetricsAddr()+"/metrics")
	}
	qcfg := queryd.DefaultConfig()
	qcfg.NATS.URL, qcfg.MetricsAddr, qcfg.Query.Partitions = st.natsURL, "127.0.0.1:0", st.cfg.Partitions
	query, err := queryd.NewMain(qcfg, st.log.With("service", "query"))
	if err != nil {
		return err
	}
	started = append(started, query)
	if err := query.Run(ctx); err != nil {
		return err
	}
	metrics = append(metrics, "query http://"+query.MetricsAddr()+"/metrics")
	for _, s := range started {
		go st.watch(s)
	}
	st.printf("  %-11s aggregator; projectors %s; query (NATS micro service %s)\n", "services", strings.Join(readmodel.Names(), ", "), contract.QueryService)
	st.printf("  %-11s %s\n", "metrics", strings.Join(metrics, "\n              "))
	return nil
}

// watch reports the first service that stops on its own through Done.
func (st *Stack) watch(s service) {
	<-s.Done()
	st.mu.Lock()
	defer st.mu.Unlock()
	select {
	case <-st.done:
	default:
		if !st.closing {
			st.err = s.Err()
			close(st.done)
		}
	}
}

// Done is closed when a service stops on its own; Err says why.
func (st *Stack) Done() <-chan struct{} { return st.done }

// Err is why a service stopped, once Done is closed.
func (st *Stack) Err() error {
	st.mu.Lock()
	defer st.mu.Unlock()
	return st.err
}

// Close stops the services (they drain), Postgres and NATS, in that order.
func (st *Stack) Close() error {
	st.mu.Lock()
	st.closing = true
	st.mu.Unlock()
	var errs []error
	for i := len(st.stops) - 1; i >= 0; i-- {
		errs = append(errs, st.stops[i]())
	}
	st.stops = nil
	return errors.Join(errs...)
}

// NATSURL is the stack's NATS server.
func (st *Stack) NATSURL() string { return st.natsURL }

// DatabaseURL is the read models' database.
func (st *Stack) DatabaseURL() string { return st.dbURL }

// Pool is a small pool on the read models' database.
func (st *Stack) Pool() *pgxpool.Pool { return st.pool }

// Admin holds the projections' operator functions.
func (st *Stack) Admin() *projections.Admin { return st.admin }

// LogPath is the file of the stack's JSON log.
func (st *Stack) LogPath() string { return filepath.Join(st.cfg.Data, "jetsource.log") }
