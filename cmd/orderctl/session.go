package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"strconv"

	"github.com/jackc/pgx/v5/pgxpool"
	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/jetsource/jetsource/client"
	"github.com/jetsource/jetsource/contract"
	"github.com/jetsource/jetsource/internal/config"
	"github.com/jetsource/jetsource/internal/daemon"
	"github.com/jetsource/jetsource/internal/es"
	"github.com/jetsource/jetsource/internal/natsconn"
	"github.com/jetsource/jetsource/internal/projections"
	"github.com/jetsource/jetsource/internal/projections/migrations"
)

// Config is orderctl's environment. Only the commands that read the
// projections need DatabaseURL.
type Config struct {
	NATS natsconn.Config
	// Streams is the stream topology and lease TTL as the aggregator reads
	// them; every command that needs the partition count checks it against
	// the streams', streams apply and check use the rest.
	Streams     es.Topology
	DatabaseURL string
	Schema      string
}

func defaultConfig() Config {
	return Config{NATS: natsconn.DefaultConfig(), Streams: es.DefaultTopology(), Schema: projections.DefaultSchema}
}

// Validate reports every problem at once, as config.FieldErrors.
func (c Config) Validate() error {
	return errors.Join(config.Nest("NATS", c.NATS.Validate()), config.Nest("Streams", c.Streams.Validate()),
		migrations.ValidateSchema("Schema", c.Schema))
}

// mapEnv maps the environment onto cfg; the defaults are cfg's.
func mapEnv(env *config.Env, cfg *Config) {
	daemon.MapNATS(env, &cfg.NATS)
	env.Int("JETSOURCE_PARTITIONS", "partition count the streams were created with", &cfg.Streams.Partitions)
	env.URL("DATABASE_URL", "PostgreSQL URL of the read models (projection commands, migrate; dev: use it instead of a local Postgres)", &cfg.DatabaseURL)
	env.String("JETSOURCE_SCHEMA", "schema of the read models", &cfg.Schema)
	env.Int("JETSOURCE_REPLICAS", "stream replicas (streams apply and check)", &cfg.Streams.Replicas)
	env.Duration("JETSOURCE_RESULTS_MAX_AGE", "how long results are kept (streams apply and check)", &cfg.Streams.ResultsMaxAge)
	env.Duration("JETSOURCE_DUPLICATE_WINDOW", "de-duplication window (streams apply and check)", &cfg.Streams.DuplicateWindow)
	env.Duration("AGGREGATOR_LEASE_TTL", "the aggregators' lease TTL (streams apply and check)", &cfg.Streams.LeaseTTL)
}

// session is one run of orderctl: its configuration, its output, and the
// connections its command asks for, opened on first use (so that send needs
// no DATABASE_URL) and closed when the command returns.
type session struct {
	cfg            Config
	env            *config.Env
	stdout, stderr io.Writer
	// ran is set once a command's own code runs: errors before are cobra's
	// (unknown commands, flags, arguments), all usage errors.
	ran bool

	nc         *nats.Conn
	js         jetstream.JetStream
	client     *client.Client
	partitions bool // the partition count is checked against the streams'
	pool       *pgxpool.Pool
	admin      *projections.Admin
}

func newSession(lookup func(string) (string, bool), stdout, stderr io.Writer) *session {
	s := &session{cfg: defaultConfig(), stdout: stdout, stderr: stderr}
	s.env = config.NewEnv(lookup, &s.cfg)
	mapEnv(s.env, &s.cfg)
	return s
}

func (s *session) close() {
	if s.pool != nil {
		s.pool.Close()
	}
	if s.nc != nil {
		s.nc.Close()
	}
}

// JetStream connects to NATS.
func (s *session) JetStream() (jetstream.JetStream, error) {
	if s.js != nil {
		return s.js, nil
	}
	nc, err := natsconn.Dial(s.cfg.NATS, "orderctl")
	switch {
	case errors.Is(err, nats.ErrAuthorization):
		return nil, fmt.Errorf("%w; check NATS_USER and NATS_PASSWORD, NATS_CREDS, NATS_NKEY or NATS_TOKEN", err)
	case err != nil:
		return nil, fmt.Errorf("%w; is NATS running there? Set NATS_URL to its address (orderctl dev prints the dev stack's)", err)
	}
	s.nc = nc
	if s.js, err = jetstream.New(nc); err != nil {
		return nil, fmt.Errorf("jetstream: %w", err)
	}
	return s.js, nil
}

// Client returns the JetSource client.
func (s *session) Client() (*client.Client, error) {
	if s.client != nil {
		return s.client, nil
	}
	if _, err := s.JetStream(); err != nil {
		return nil, err
	}
	c, err := client.New(s.nc)
	if err != nil {
		return nil, err
	}
	s.client = c
	return c, nil
}

// Partitions checks JETSOURCE_PARTITIONS against the count the event store
// was created with, as the services do: with another count, orderctl would
// look for an order's events and cursors in the wrong partition.
func (s *session) Partitions(ctx context.Context) (int, error) {
	n := s.cfg.Streams.Partitions
	if s.partitions {
		return n, nil
	}
	js, err := s.JetStream()
	if err != nil {
		return 0, err
	}
	stream, err := js.Stream(ctx, contract.EventsStream)
	if err != nil {
		return 0, streamError(err)
	}
	recorded := stream.CachedInfo().Config.Metadata[es.PartitionsKey]
	if recorded != strconv.Itoa(n) {
		return 0, configError{fmt.Errorf("JETSOURCE_PARTITIONS is %d, but the streams were created with %s partitions; set JETSOURCE_PARTITIONS=%s",
			n, recorded, recorded)}
	}
	s.partitions = true
	return n, nil
}

// streamError explains a failure to find the event store.
func streamError(err error) error {
	switch {
	case errors.Is(err, jetstream.ErrStreamNotFound):
		return fmt.Errorf("stream %s does not exist on this NATS server; create the streams with orderctl streams apply (the dev stack creates them)",
			contract.EventsStream)
	case errors.Is(err, jetstream.ErrJetStreamNotEnabled):
		return fmt.Errorf("%w; JetSource needs a NATS server with JetStream (nats-server -js)", err)
	}
	return fmt.Errorf("look up stream %s: %w", contract.EventsStream, err)
}

// DB returns a pool on DATABASE_URL, checking that the projections' tables
// are there, so that a wrong URL or schema fails with a clear message.
func (s *session) DB(ctx context.Context) (*pgxpool.Pool, error) {
	if s.pool != nil {
		return s.pool, nil
	}
	pool, err := s.connectDB(ctx, "this command reads the projections' tables in Postgres")
	if err != nil {
		return nil, err
	}
	var found bool
	if err := pool.QueryRow(ctx, "SELECT to_regclass($1) IS NOT NULL", s.cfg.Schema+".projection_checkpoints").Scan(&found); err != nil {
		return nil, dbError(pool, err)
	}
	if !found {
		return nil, fmt.Errorf("schema %q of DATABASE_URL has no projection tables: no projector has run against this database yet, or JETSOURCE_SCHEMA names another schema", s.cfg.Schema)
	}
	return pool, nil
}

// connectDB opens the pool on DATABASE_URL; why says what needs it.
func (s *session) connectDB(ctx context.Context, why string) (*pgxpool.Pool, error) {
	if s.cfg.DatabaseURL == "" {
		return nil, fmt.Errorf("DATABASE_URL is not set: %s; set it (orderctl dev prints the dev stack's)", why)
	}
	cfg, err := pgxpool.ParseConfig(s.cfg.DatabaseURL)
	if err != nil {
		return nil, configError{fmt.Errorf("DATABASE_URL is not a PostgreSQL URL or connection string: %w", err)}
	}
	cfg.ConnConfig.RuntimeParams["application_name"] = "orderctl"
	pool, err := pgxpool.NewWithConfig(ctx, cfg)
	if err != nil {
		return nil, fmt.Errorf("postgres: %w", err)
	}
	s.pool = pool
	return pool, nil
}

// dbError tells the first failure on the pool, with what to check.
func dbError(pool *pgxpool.Pool, err error) error {
	c := pool.Config().ConnConfig
	return fmt.Errorf("postgres at %s:%d: %w; is it running, and does DATABASE_URL name it?", c.Host, c.Port, err)
}

// Admin returns the projections' operator functions, over Postgres and
// NATS.
func (s *session) Admin(ctx context.Context) (*projections.Admin, error) {
	if s.admin != nil {
		return s.admin, nil
	}
	partitions, err := s.Partitions(ctx)
	if err != nil {
		return nil, err
	}
	pool, err := s.DB(ctx)
	if err != nil {
		return nil, err
	}
	admin, err := projections.NewAdmin(pool, s.js, projections.AdminConfig{Schema: s.cfg.Schema, Partitions: partitions})
	if err != nil {
		return nil, err
	}
	s.admin = admin
	return admin, nil
}
