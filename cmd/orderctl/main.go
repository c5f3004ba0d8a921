// Command orderctl is the operator's and developer's command line for
// JetSource: send commands, show an order's history or its state as of a
// version or time, watch and repair the projections (lag, checkpoints,
// dead letters, rebuilds, read-your-writes), and run the all-in-one dev
// stack.
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"os/signal"
	"strings"
	"syscall"

	"github.com/jackc/pgx/v5/pgxpool"
	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/jetsource/jetsource/client"
	"github.com/jetsource/jetsource/internal/aggregator"
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
	// Streams is the stream topology as the aggregator reads it; every
	// command uses the partition count, streams apply and check the rest.
	Streams es.Topology
	// Aggregator holds the lease bucket's settings (LeaseTTL,
	// StreamReplicas) for streams apply and check.
	Aggregator  aggregator.Config
	DatabaseURL string
	Schema      string
}

func defaultConfig() Config {
	return Config{NATS: natsconn.DefaultConfig(), Streams: es.DefaultTopology(), Aggregator: aggregator.DefaultConfig(),
		Schema: projections.DefaultSchema}
}

// Validate reports every problem at once, as config.FieldErrors.
func (c Config) Validate() error {
	return errors.Join(config.Nest("NATS", c.NATS.Validate()), config.Nest("Streams", c.Streams.Validate()),
		config.Nest("Aggregator", c.Aggregator.Validate()), migrations.ValidateSchema("Schema", c.Schema))
}

// mapEnv maps the environment onto cfg; the defaults are cfg's.
func mapEnv(env *config.Env, cfg *Config) {
	daemon.MapNATS(env, &cfg.NATS)
	env.Int("JETSOURCE_PARTITIONS", "partition count the streams were created with", &cfg.Streams.Partitions, &cfg.Aggregator.Partitions)
	env.Int("JETSOURCE_REPLICAS", "stream replicas (streams apply and check)", &cfg.Streams.Replicas, &cfg.Aggregator.StreamReplicas)
	env.Duration("JETSOURCE_RESULTS_MAX_AGE", "how long results are kept (streams apply and check)", &cfg.Streams.ResultsMaxAge)
	env.Duration("JETSOURCE_DUPLICATE_WINDOW", "de-duplication window (streams apply and check)", &cfg.Streams.DuplicateWindow)
	env.Duration("AGGREGATOR_LEASE_TTL", "the aggregators' lease TTL (streams apply and check)", &cfg.Aggregator.LeaseTTL)
	env.URL("DATABASE_URL", "PostgreSQL URL of the read models", &cfg.DatabaseURL)
	env.String("JETSOURCE_SCHEMA", "schema of the read models", &cfg.Schema)
}

const usage = `orderctl — JetSource command line

Usage:
  orderctl send [flags] <orderId> <CommandType> [data-json]
                        send a command and print its result
  orderctl history [--json] <orderId>
                        print an order's events
  orderctl state [--version N] [--at TIME] <orderId>
                        print an order's state, now or as it was at a version or time (RFC 3339)
  orderctl lag [--projection NAME] [--json]
                        events and seconds each partition of the projections is behind
  orderctl checkpoints --projection NAME
                        a projection's cursor per partition
  orderctl dlq list [--projection NAME] [--status STATUS] [--order ID] [--after ID] [--limit N] [--json]
                        dead letters (status failed, parked, retried, skipped or superseded)
  orderctl dlq retry --projection NAME <id>
                        apply a failed event again, then the events parked behind it
  orderctl dlq skip --projection NAME <id>
                        drop a failed event, then apply the events parked behind it
  orderctl rebuild <projection>
                        rebuild a projection into fresh tables and swap them in (blue/green)
  orderctl wait --projection NAME [--timeout D] <commandId>
                        wait until a projection has projected a command's events
  orderctl streams apply|check
                        create or update the streams and the aggregator's lease bucket, or
                        list how they differ from the configuration (exit 1 if they do)
  orderctl migrate      apply the schema migrations to JETSOURCE_SCHEMA and grant the roles of
                        deploy/postgres/roles.sql their privileges (run as the schema's owner)
  orderctl dev [flags]  run NATS, Postgres, the aggregator and every projector in this
                        process, with a demo workload; see orderctl dev --help

Projections: order_summary, order_history, sales_daily.

Environment: NATS_URL (default nats://127.0.0.1:4222), NATS_CREDS, NATS_NKEY,
NATS_USER, NATS_PASSWORD, NATS_TOKEN, NATS_INBOX_PREFIX, NATS_TLS_CERT, NATS_TLS_KEY,
NATS_TLS_CA, JETSOURCE_PARTITIONS (default 16); for lag, checkpoints, dlq, rebuild,
wait and migrate also DATABASE_URL and JETSOURCE_SCHEMA (default jetsource); for streams
also JETSOURCE_REPLICAS (default 1), JETSOURCE_RESULTS_MAX_AGE (24h),
JETSOURCE_DUPLICATE_WINDOW (2m) and AGGREGATOR_LEASE_TTL (5s), as the aggregator reads them.
dev starts its own NATS, and uses DATABASE_URL if set, else a local Postgres.
`

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGTERM, os.Interrupt)
	// The first signal starts a clean stop; a second one ends the process
	// at once, should the stop hang.
	go func() { <-ctx.Done(); stop() }()
	os.Exit(run(ctx, os.Args[1:], os.Stdout, os.Stderr))
}

// command is one orderctl subcommand.
type command func(ctx context.Context, s *session, args []string) error

// run executes one orderctl command and returns the exit code: 0 done, 1
// failed, 2 bad usage, 3 a sent (or awaited) command was rejected.
func run(ctx context.Context, args []string, stdout, stderr io.Writer) int {
	if len(args) == 0 || args[0] == "help" || args[0] == "-h" || args[0] == "--help" {
		fmt.Fprint(stdout, usage)
		return 0
	}
	commands := map[string]command{
		"send":        cmdSend,
		"history":     cmdHistory,
		"state":       cmdState,
		"lag":         cmdLag,
		"checkpoints": cmdCheckpoints,
		"dlq":         cmdDLQ,
		"rebuild":     cmdRebuild,
		"wait":        cmdWait,
		"streams":     cmdStreams,
		"migrate":     cmdMigrate,
		"dev":         cmdDev,
	}
	fn, ok := commands[args[0]]
	if !ok {
		fmt.Fprintf(stderr, "orderctl: unknown command %q\n\n%s", args[0], usage)
		return 2
	}
	cfg := defaultConfig()
	env := config.NewEnv(os.LookupEnv, &cfg)
	mapEnv(env, &cfg)
	if err := env.Check(cfg.Validate()); err != nil {
		fmt.Fprintf(stderr, "orderctl: invalid configuration:\n  %s\n", strings.ReplaceAll(err.Error(), "\n", "\n  "))
		return 2
	}
	s := &session{cfg: cfg, stdout: stdout, stderr: stderr}
	defer s.close()
	err := fn(ctx, s, args[1:])
	var usageErr usageError
	var rejected *client.RejectedError
	switch {
	case err == nil:
		return 0
	case errors.Is(err, flag.ErrHelp):
		return 0
	case errors.As(err, &usageErr):
		fmt.Fprintf(stderr, "orderctl %s: %v\n\n%s", args[0], err, usage)
		return 2
	case errors.As(err, &rejected):
		return 3
	default:
		fmt.Fprintf(stderr, "orderctl %s: %v\n", args[0], err)
		return 1
	}
}

type usageError struct{ error }

func usagef(format string, args ...any) error { return usageError{fmt.Errorf(format, args...)} }

// session is one run of orderctl: its configuration, its output, and the
// connections its command asks for, opened on first use (so that send needs
// no DATABASE_URL) and closed when the command returns.
type session struct {
	cfg            Config
	stdout, stderr io.Writer

	nc     *nats.Conn
	client *client.Client
	pool   *pgxpool.Pool
	admin  *projections.Admin
}

func (s *session) close() {
	if s.pool != nil {
		s.pool.Close()
	}
	if s.nc != nil {
		s.nc.Close()
	}
}

// Client returns the JetSource client, connecting to NATS first.
func (s *session) Client() (*client.Client, error) {
	if s.client != nil {
		return s.client, nil
	}
	nc, err := natsconn.Dial(s.cfg.NATS, "orderctl")
	if err != nil {
		return nil, err
	}
	s.nc = nc
	c, err := client.New(nc, client.WithPartitions(s.cfg.Streams.Partitions))
	if err != nil {
		return nil, err
	}
	s.client = c
	return c, nil
}

// DB returns a pool on DATABASE_URL, checking that the projections' tables
// are there, so that a wrong URL or schema fails with a clear message.
func (s *session) DB(ctx context.Context) (*pgxpool.Pool, error) {
	if s.pool != nil {
		return s.pool, nil
	}
	if s.cfg.DatabaseURL == "" {
		return nil, errors.New("DATABASE_URL is not set; this command reads the projections' tables in Postgres")
	}
	cfg, err := pgxpool.ParseConfig(s.cfg.DatabaseURL)
	if err != nil {
		return nil, fmt.Errorf("DATABASE_URL: %w", err)
	}
	cfg.ConnConfig.RuntimeParams["application_name"] = "orderctl"
	pool, err := pgxpool.NewWithConfig(ctx, cfg)
	if err != nil {
		return nil, fmt.Errorf("postgres: %w", err)
	}
	s.pool = pool
	var found bool
	if err := pool.QueryRow(ctx, "SELECT to_regclass($1) IS NOT NULL", s.cfg.Schema+".projection_checkpoints").Scan(&found); err != nil {
		return nil, fmt.Errorf("postgres at %s: %w", cfg.ConnConfig.Host, err)
	}
	if !found {
		return nil, fmt.Errorf("schema %q of DATABASE_URL has no projection tables: no projector has run against this database yet, or JETSOURCE_SCHEMA names another schema", s.cfg.Schema)
	}
	return pool, nil
}

// Admin returns the projections' operator functions, over Postgres and
// NATS.
func (s *session) Admin(ctx context.Context) (*projections.Admin, error) {
	if s.admin != nil {
		return s.admin, nil
	}
	pool, err := s.DB(ctx)
	if err != nil {
		return nil, err
	}
	if _, err := s.Client(); err != nil {
		return nil, err
	}
	js, err := jetstream.New(s.nc)
	if err != nil {
		return nil, fmt.Errorf("jetstream: %w", err)
	}
	admin, err := projections.NewAdmin(pool, js, projections.AdminConfig{Schema: s.cfg.Schema, Partitions: s.cfg.Streams.Partitions})
	if err != nil {
		return nil, err
	}
	s.admin = admin
	return admin, nil
}

func newFlags(name string) *flag.FlagSet {
	fs := flag.NewFlagSet(name, flag.ContinueOnError)
	fs.SetOutput(io.Discard)
	return fs
}
