package main

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/url"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"
	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/jetsource/jetsource/contract"
	"github.com/jetsource/jetsource/internal/aggregator"
	"github.com/jetsource/jetsource/internal/es"
	"github.com/jetsource/jetsource/internal/natsserver"
	"github.com/jetsource/jetsource/internal/pgserver"
	"github.com/jetsource/jetsource/internal/projections"
	"github.com/jetsource/jetsource/internal/projections/migrations"
	"github.com/jetsource/jetsource/internal/projections/readmodel"
)

// devBatchWait is the projectors' batch window in the dev stack. At the
// production default (5 ms) nearly every event gets a transaction of its
// own, and with three projectors, Postgres and the aggregator on one small
// machine, Postgres starves the aggregator: on 2 vCPUs the demo ran at 540
// commands/s with 5 ms and 2,500 with 50 ms. Read-your-writes waits up to
// this much longer.
const devBatchWait = 50 * time.Millisecond

// devOptions are the flags of orderctl dev.
type devOptions struct {
	data       string
	natsPort   int
	pgPort     int
	demoOrders int
	reset      bool
}

// cmdDev runs the whole system in this process until ctx ends: embedded
// NATS, a local Postgres (unless DATABASE_URL names one), the aggregator and
// a runner per projection; then a demo workload, a summary of the read
// models, and how to talk to the stack.
func cmdDev(ctx context.Context, s *session, args []string) error {
	fs := newFlags("dev")
	var o devOptions
	fs.StringVar(&o.data, "data", ".data", "directory of the stack's data and log; reused by the next run")
	fs.IntVar(&o.natsPort, "nats-port", 4222, "NATS port on 127.0.0.1 (0: any free port)")
	fs.IntVar(&o.pgPort, "pg-port", 5433, "Postgres port on 127.0.0.1, if this one is free (0: any free port); unused with DATABASE_URL")
	fs.IntVar(&o.demoOrders, "demo-orders", 500, "orders the demo workload sends through their lifecycle (0: no demo)")
	fs.BoolVar(&o.reset, "reset", false, "wipe the data first (with DATABASE_URL, drop JETSOURCE_SCHEMA there too)")
	if err := s.parse(fs, args); err != nil {
		return err
	}
	switch {
	case fs.NArg() != 0:
		return usagef("unexpected arguments %q", fs.Args())
	case o.demoOrders < 0:
		return usagef("--demo-orders must not be negative")
	case o.natsPort < 0 || o.natsPort > 65535 || o.pgPort < 0 || o.pgPort > 65535:
		return usagef("ports are 0 to 65535")
	}

	st := &stack{out: s.stdout, cfg: s.cfg, opts: o}
	err := st.start(ctx)
	if err == nil && o.demoOrders > 0 {
		err = st.runDemo(ctx, o.demoOrders)
	}
	if err == nil {
		err = st.report(ctx)
	}
	if err == nil {
		select {
		case <-ctx.Done():
		case err = <-st.failed:
		}
	}
	if ctx.Err() != nil {
		err = nil // Ctrl-C: stop cleanly, whatever the stack was doing
		fmt.Fprintln(st.out)
	}
	return errors.Join(err, st.stop())
}

// stack is the running dev stack. start pushes a stop function for every
// part it starts; stop runs them in reverse.
type stack struct {
	out  io.Writer
	cfg  Config
	opts devOptions

	log     *slog.Logger
	natsURL string
	dbURL   string
	js      jetstream.JetStream
	pool    *pgxpool.Pool // for the demo, the summary and Admin
	admin   *projections.Admin
	// failed receives the error of a service that stopped on its own.
	failed chan error

	stops []func() error
}

func (st *stack) onStop(fn func() error) { st.stops = append(st.stops, fn) }

func (st *stack) stop() error {
	var errs []error
	for i := len(st.stops) - 1; i >= 0; i-- {
		errs = append(errs, st.stops[i]())
	}
	st.stops = nil
	return errors.Join(errs...)
}

func (st *stack) printf(format string, args ...any) { fmt.Fprintf(st.out, format, args...) }

func (st *stack) start(ctx context.Context) error {
	data := st.opts.data
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
	if st.opts.reset {
		if err := st.wipe(ctx, data, pgDir); err != nil {
			return err
		}
	}
	logPath := filepath.Join(data, "jetsource.log")
	logFile, err := os.OpenFile(logPath, os.O_CREATE|os.O_APPEND|os.O_WRONLY, 0o644)
	if err != nil {
		return fmt.Errorf("open the log: %w", err)
	}
	st.onStop(logFile.Close)
	st.log = slog.New(slog.NewJSONHandler(logFile, nil))
	st.log.Info("dev stack starting", "data", data, "pid", os.Getpid())

	reused := ""
	if _, err := os.Stat(filepath.Join(data, "nats")); err == nil {
		reused = " (kept from the last run; --reset wipes it)"
	}
	st.printf("JetSource dev stack, data in %s%s\n", data, reused)
	if err := st.startNATS(filepath.Join(data, "nats")); err != nil {
		return err
	}
	if err := st.startPostgres(ctx, pgDir, pgBlocked); err != nil {
		return err
	}
	if err := st.startServices(ctx); err != nil {
		return err
	}
	st.printf("  %-11s %s (JSON)\n", "logs", logPath)
	return nil
}

// lock keeps a second dev stack off the same data: two NATS servers on one
// store would corrupt it, and starting Postgres stops whatever server runs
// in its directory.
func (st *stack) lock(data string) error {
	path := filepath.Join(data, "dev.lock")
	f, err := os.OpenFile(path, os.O_CREATE|os.O_RDWR, 0o644)
	if err != nil {
		return fmt.Errorf("lock the data directory: %w", err)
	}
	if err := syscall.Flock(int(f.Fd()), syscall.LOCK_EX|syscall.LOCK_NB); err != nil {
		pid, _ := io.ReadAll(f)
		f.Close()
		return fmt.Errorf("another orderctl dev (pid %s) uses %s; stop it first, or give this one its own --data", strings.TrimSpace(string(pid)), data)
	}
	if err := f.Truncate(0); err == nil {
		_, _ = f.WriteAt([]byte(strconv.Itoa(os.Getpid())+"\n"), 0)
	}
	st.onStop(f.Close) // closing releases the lock
	return nil
}

// postgresDir is the local cluster's data directory: data/postgres, unless
// this process runs as root and that is out of reach for the OS user
// postgres, which the server then runs as (a clone under /root, mode 700).
// The cluster then lives in a directory of its own under /var/tmp, named
// after the data directory, so that every run finds it again; blocked is
// the directory postgres cannot enter.
func postgresDir(data string) (dir, blocked string, err error) {
	abs, err := filepath.Abs(data)
	if err != nil {
		return "", "", err
	}
	dir = filepath.Join(abs, "postgres")
	if os.Geteuid() != 0 {
		return dir, "", nil
	}
	for d := abs; ; d = filepath.Dir(d) {
		fi, err := os.Stat(d)
		if err != nil {
			return "", "", err
		}
		if fi.Mode().Perm()&0o001 == 0 {
			sum := sha256.Sum256([]byte(abs))
			parent := filepath.Join("/var/tmp", "jetsource-dev-"+hex.EncodeToString(sum[:4]))
			// Reachable for postgres: pgserver hands over only the cluster's
			// own directory.
			if err := os.MkdirAll(parent, 0o755); err != nil {
				return "", "", err
			}
			if err := os.Chmod(parent, 0o755); err != nil { // whatever the umask
				return "", "", err
			}
			return filepath.Join(parent, "postgres"), d, nil
		}
		if d == filepath.Dir(d) {
			return dir, "", nil
		}
	}
}

// wipe removes what earlier runs left: only the stack's own files, never the
// data directory itself, which a mistyped --data could make precious.
func (st *stack) wipe(ctx context.Context, data, pgDir string) error {
	paths := []string{filepath.Join(data, "nats"), filepath.Join(data, "jetsource.log")}
	if st.cfg.DatabaseURL == "" {
		paths = append(paths, pgDir)
	}
	for _, p := range paths {
		if err := os.RemoveAll(p); err != nil {
			return fmt.Errorf("reset: %w", err)
		}
	}
	if st.cfg.DatabaseURL != "" {
		conn, err := pgx.Connect(ctx, st.cfg.DatabaseURL)
		if err != nil {
			return fmt.Errorf("reset: connect to DATABASE_URL: %w", err)
		}
		defer conn.Close(context.WithoutCancel(ctx))
		if _, err := conn.Exec(ctx, "DROP SCHEMA IF EXISTS "+pgx.Identifier{st.cfg.Schema}.Sanitize()+" CASCADE"); err != nil {
			return fmt.Errorf("reset: drop schema %s: %w", st.cfg.Schema, err)
		}
	}
	st.printf("Reset: removed the NATS data, the log and the read models.\n")
	return nil
}

func (st *stack) startNATS(dir string) error {
	port := st.opts.natsPort
	if port != 0 {
		l, err := net.Listen("tcp", net.JoinHostPort("127.0.0.1", strconv.Itoa(port)))
		if err != nil {
			return fmt.Errorf("NATS cannot listen on 127.0.0.1:%d (is another NATS or dev stack running?); pick another port with --nats-port: %w",
				port, err)
		}
		l.Close()
	}
	srv, err := natsserver.Start(natsserver.Config{StoreDir: dir, Port: port})
	if err != nil {
		return err
	}
	st.onStop(func() error { srv.Shutdown(); st.printf("  NATS stopped\n"); return nil })
	st.natsURL = srv.ClientURL()
	st.printf("  %-11s %s, JetStream data in %s\n", "NATS", st.natsURL, dir)
	st.printf("  %-11s default fsync (every 2 minutes): fast, but a machine crash can lose the last\n", "")
	st.printf("  %-11s acknowledged writes; production uses sync_interval: always\n", "")
	return nil
}

func (st *stack) startPostgres(ctx context.Context, dir, blocked string) error {
	if st.cfg.DatabaseURL != "" {
		st.dbURL = st.cfg.DatabaseURL
		st.printf("  %-11s %s (DATABASE_URL)\n", "Postgres", redact(st.dbURL))
		return nil
	}
	if _, err := pgserver.Find(); errors.Is(err, pgserver.ErrNotInstalled) {
		st.printf("  %-11s not installed; installing it with apt-get (first run only, takes a minute)...\n", "Postgres")
	}
	port := st.opts.pgPort
	if port != 0 && !leftoverOn(dir, port) {
		l, err := net.Listen("tcp", net.JoinHostPort("127.0.0.1", strconv.Itoa(port)))
		if err != nil {
			st.printf("  %-11s port %d is taken; using a free one (or choose with --pg-port)\n", "Postgres", port)
			port = 0
		} else {
			l.Close()
		}
	}
	began := time.Now()
	srv, err := pgserver.Start(ctx, pgserver.Config{Dir: dir, Port: port, Install: true})
	if err != nil {
		return err
	}
	// Stop is a fast shutdown here: a caller's directory gets a checkpoint,
	// so the data is all there next time.
	st.onStop(func() error {
		err := srv.Stop()
		if err == nil {
			st.printf("  Postgres stopped\n")
		}
		return err
	})
	st.dbURL = srv.URL("postgres")
	where := "data in " + dir
	if blocked != "" {
		where += " (Postgres runs as user postgres, which cannot enter " + blocked + ")"
	}
	st.printf("  %-11s %s, %s, up in %s\n", "Postgres", st.dbURL, where, time.Since(began).Round(100*time.Millisecond))
	return nil
}

// leftoverOn reports whether a server that a killed run left in dir holds
// port: Start stops it, which frees the port.
func leftoverOn(dir string, port int) bool {
	pid, err := os.ReadFile(filepath.Join(dir, "postmaster.pid"))
	lines := strings.Split(string(pid), "\n") // the fourth line is the port
	return err == nil && len(lines) > 3 && strings.TrimSpace(lines[3]) == strconv.Itoa(port)
}

// redact hides the password of a database URL.
func redact(dbURL string) string {
	u, err := url.Parse(dbURL)
	if err != nil {
		return "(DATABASE_URL)"
	}
	return u.Redacted()
}

// connect opens a NATS connection that stop drains. Each service gets its
// own, as it would in production.
func (st *stack) connect(name string) (jetstream.JetStream, error) {
	nc, err := nats.Connect(st.natsURL, nats.Name(name), nats.MaxReconnects(-1))
	if err != nil {
		return nil, fmt.Errorf("connect to nats: %w", err)
	}
	st.onStop(func() error { return nc.Drain() })
	js, err := jetstream.New(nc)
	if err != nil {
		return nil, fmt.Errorf("jetstream: %w", err)
	}
	return js, nil
}

// startServices creates the streams and the schema and starts the
// aggregator and a runner per projection, as their own binaries would.
func (st *stack) startServices(ctx context.Context) error {
	var err error
	if st.js, err = st.connect("jetsource-dev"); err != nil {
		return err
	}
	partitions := st.cfg.Partitions
	err = es.Setup(ctx, st.js, es.Topology{Partitions: partitions, Replicas: 1, ResultsMaxAge: 24 * time.Hour, DuplicateWindow: 2 * time.Minute})
	if errors.Is(err, es.ErrPartitionMismatch) {
		return fmt.Errorf("%w; start afresh with --reset, or set JETSOURCE_PARTITIONS to match", err)
	}
	if err != nil {
		return err
	}
	if st.pool, err = newPool(ctx, st.dbURL, "jetsource-dev", 4); err != nil {
		return err
	}
	st.onStop(func() error { st.pool.Close(); return nil })
	if _, err := migrations.Apply(ctx, st.pool, st.cfg.Schema); err != nil {
		return err
	}
	if err := st.checkCursors(ctx); err != nil {
		return err
	}
	st.admin, err = projections.NewAdmin(st.pool, st.js, projections.AdminConfig{Schema: st.cfg.Schema, Partitions: partitions, Logger: st.log})
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
	st.printf("  %-11s ORDERS_COMMANDS, ORDERS_EVENTS, ORDERS_SNAPSHOTS, ORDERS_RESULTS: %d partitions, R1%s\n", "streams", partitions, stored)
	st.printf("  %-11s Postgres schema %s\n", "read models", st.cfg.Schema)

	// Connections and pools first: they close after the services stop.
	services := map[string]func(context.Context) error{}
	js, err := st.connect("jetsource-dev-aggregator")
	if err != nil {
		return err
	}
	svc, err := aggregator.New(js, aggregator.Config{Partitions: partitions, Logger: st.log.With("service", "aggregator"),
		ReplicaID: "dev", StreamReplicas: 1})
	if err != nil {
		return err
	}
	services["aggregator"] = svc.Run
	for _, name := range readmodel.Names() {
		p, _ := readmodel.New(name) // a known name
		pool, err := newPool(ctx, st.dbURL, "jetsource-dev-"+name, int32(min(partitions, 8)+3))
		if err != nil {
			return err
		}
		st.onStop(func() error { pool.Close(); return nil })
		js, err := st.connect("jetsource-dev-projector-" + name)
		if err != nil {
			return err
		}
		r, err := projections.NewRunner(pool, js, projections.Config{Projection: p, Schema: st.cfg.Schema, Partitions: partitions,
			BatchWait: devBatchWait, ReplicaID: "dev", Logger: st.log.With("service", "projector")})
		if err != nil {
			return err
		}
		services["projector "+name] = r.Run
	}

	// The services stop when stop runs, not on Ctrl-C, so that each drains
	// before what it depends on goes away.
	run, stopServices := context.WithCancel(context.WithoutCancel(ctx))
	st.failed = make(chan error, len(services))
	var exited sync.WaitGroup
	for name, fn := range services {
		exited.Go(func() {
			err := fn(run)
			if run.Err() == nil {
				st.failed <- fmt.Errorf("%s stopped: %v", name, err)
			}
		})
	}
	st.onStop(func() error {
		stopServices()
		exited.Wait()
		st.printf("  aggregator and projectors stopped\n")
		return nil
	})
	st.printf("  %-11s aggregator; projectors %s\n", "services", strings.Join(readmodel.Names(), ", "))
	return nil
}

// checkCursors refuses read models that are ahead of the event store: they
// were built from other events (the NATS data was wiped, the database was
// not), and the runners would skip every new event up to their cursors.
func (st *stack) checkCursors(ctx context.Context) error {
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

func newPool(ctx context.Context, dbURL, app string, conns int32) (*pgxpool.Pool, error) {
	cfg, err := pgxpool.ParseConfig(dbURL)
	if err != nil {
		return nil, fmt.Errorf("database URL: %w", err)
	}
	cfg.MaxConns = conns
	cfg.ConnConfig.RuntimeParams["application_name"] = app
	pool, err := pgxpool.NewWithConfig(ctx, cfg)
	if err != nil {
		return nil, fmt.Errorf("postgres pool: %w", err)
	}
	return pool, nil
}
