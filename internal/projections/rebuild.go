package projections

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/nats-io/nats.go/jetstream"

	"go.opentelemetry.io/otel/trace/noop"

	"github.com/jetsource/jetsource/contract"
	"github.com/jetsource/jetsource/internal/projections/migrations"
)

// ErrRebuildRunning means another process is rebuilding the projection.
var ErrRebuildRunning = errors.New("a rebuild of the projection is already running")

// RebuildOptions tunes a rebuild. Zero fields take the defaults of Config.
type RebuildOptions struct {
	BatchSize   int
	BatchWait   time.Duration
	MaxAttempts int
	// Progress receives figures every ProgressEvery (1s if zero) and once
	// after the swap; it is called from one goroutine. May be nil.
	Progress      func(RebuildProgress)
	ProgressEvery time.Duration
	// SwapWithin, if not 0, also lets the rebuild swap as soon as the
	// rebuild consumers hold at most this many events not yet projected
	// into the shadow; the live runners project the rest after the swap.
	// Without it the rebuild swaps once the shadow has caught up with the
	// stream (see Rebuild).
	SwapWithin uint64
}

// RebuildProgress describes a running rebuild.
type RebuildProgress struct {
	Projection string
	// Done counts the events projected into the shadow tables so far.
	Done uint64
	// Total is Done plus the events still to project; it grows while
	// events are appended.
	Total uint64
	// Elapsed is the time since the rebuild started projecting.
	Elapsed time.Duration
	// Rate is Done per second of Elapsed.
	Rate float64
	// Swapped is true in the last report, after the swap committed.
	Swapped bool
}

// Rebuild builds a projection afresh from sequence 1 into shadow tables
// (a schema of their own, with their own checkpoints and dead letters)
// while the live tables keep serving and the live runners keep projecting.
// When the shadow has caught up, it swaps it in with one transaction: it
// locks the live checkpoints (waiting for batches in flight), moves the
// live tables out and the shadow tables in, replaces the live checkpoints
// with the shadow's, marks the live open dead letters superseded and copies
// the shadow's, and drops the old tables. Live runners then find their
// checkpoint moved, and continue from the swapped cursors.
//
// The shadow has caught up when, at a check (every ProgressEvery), each
// partition's shadow checkpoint has reached the partition's last stored
// event as of the previous check. Under steady writes the shadow is never
// idle, so waiting for it to have nothing pending would never end; this
// condition only asks it to be less than one check behind, and the events
// it has not seen are projected by the live runners after the swap.
//
// An earlier, unfinished rebuild's shadow is dropped, not resumed.
func (a *Admin) Rebuild(ctx context.Context, p Projection, opts RebuildOptions) (RebuildProgress, error) {
	opts, err := a.rebuildOptions(p, opts)
	if err != nil {
		return RebuildProgress{}, err
	}
	r := &rebuild{Admin: a, p: p, name: p.Name(), opts: opts, log: a.cfg.Logger.With("projection", p.Name(), "rebuild", true)}
	lock, err := r.lock(ctx)
	if err != nil {
		return RebuildProgress{}, fmt.Errorf("rebuild %s: %w", r.name, err)
	}
	defer lock.Close(context.WithoutCancel(ctx))
	epoch, err := r.prepare(ctx, lock)
	if err != nil {
		return RebuildProgress{}, fmt.Errorf("rebuild %s: %w", r.name, err)
	}
	r.log.Info("rebuild started")
	r.start = time.Now()
	workers := r.startWorkers(ctx, epoch)
	err = r.waitCaughtUp(ctx, lock, workers)
	workers.stop()
	if err != nil {
		return r.progress(0, false), err
	}
	if err := a.swap(ctx, lock, p); err != nil {
		return r.progress(0, false), fmt.Errorf("rebuild %s: swap: %w", r.name, err)
	}
	for part := range a.cfg.Partitions {
		if err := a.deleteConsumer(ctx, rebuildConsumerName(a.cfg.Schema, r.name, part)); err != nil {
			r.log.Warn("cannot delete rebuild consumer", "partition", part, "error", err)
		}
	}
	pr := r.report(r.progress(0, true))
	r.log.Info("rebuild swapped in", "events", pr.Done, "elapsed", pr.Elapsed, "rate", pr.Rate)
	return pr, nil
}

// rebuildOptions fills opts' zero fields from DefaultConfig and checks
// them with p.
func (a *Admin) rebuildOptions(p Projection, opts RebuildOptions) (RebuildOptions, error) {
	if err := checkProjection(p); err != nil {
		return opts, err
	}
	d := DefaultConfig()
	if opts.BatchSize == 0 {
		opts.BatchSize = d.BatchSize
	}
	if opts.BatchWait == 0 {
		opts.BatchWait = d.BatchWait
	}
	if opts.MaxAttempts == 0 {
		opts.MaxAttempts = d.MaxAttempts
	}
	if opts.ProgressEvery == 0 {
		opts.ProgressEvery = time.Second
	}
	if err := errors.Join(checkBatching(a.cfg.Partitions, opts.BatchSize, opts.BatchWait, opts.MaxAttempts)...); err != nil {
		return opts, fmt.Errorf("rebuild options: %w", err)
	}
	return opts, nil
}

// rebuild is one run of Rebuild.
type rebuild struct {
	*Admin
	p     Projection
	name  string
	opts  RebuildOptions
	log   *slog.Logger
	start time.Time
	done  atomic.Uint64 // events projected into the shadow
}

// lock opens the rebuild lock session, held for the whole rebuild: it
// claims the shadow's partitions for this rebuild's workers and commits
// the swap. Only one rebuild of a projection runs at a time.
func (r *rebuild) lock(ctx context.Context) (*pgx.Conn, error) {
	lock, err := pgx.ConnectConfig(ctx, r.pool.Config().ConnConfig)
	if err != nil {
		return nil, fmt.Errorf("open lock session: %w", err)
	}
	var ok bool
	if err := lock.QueryRow(ctx, "SELECT pg_try_advisory_lock($1, $2)", lockClass(r.cfg.Schema, r.name), rebuildLock).Scan(&ok); err != nil {
		lock.Close(context.WithoutCancel(ctx))
		return nil, fmt.Errorf("take the rebuild lock: %w", err)
	}
	if !ok {
		lock.Close(context.WithoutCancel(ctx))
		return nil, ErrRebuildRunning
	}
	return lock, nil
}

// prepare creates the shadow tables, claims their partitions and deletes
// the consumers an earlier rebuild left, which would report its old
// progress until a new worker reset them. It returns the claim's epoch.
func (r *rebuild) prepare(ctx context.Context, lock *pgx.Conn) (int64, error) {
	if err := r.createShadow(ctx, r.p); err != nil {
		return 0, err
	}
	epoch, err := r.claimShadow(ctx, lock, r.name)
	if err != nil {
		return 0, err
	}
	for part := range r.cfg.Partitions {
		if err := r.deleteConsumer(ctx, rebuildConsumerName(r.cfg.Schema, r.name, part)); err != nil {
			return 0, fmt.Errorf("delete old consumer: %w", err)
		}
	}
	return epoch, nil
}

// shadowWorkers are the workers projecting into the shadow, one per
// partition.
type shadowWorkers struct {
	started  []atomic.Bool // a partition's worker has reset its consumer
	failures chan error
	stop     func() // stops the workers (each finishes its batch) and waits
}

func (w *shadowWorkers) allStarted() bool {
	for i := range w.started {
		if !w.started[i].Load() {
			return false
		}
	}
	return true
}

// startWorkers starts a worker per partition projecting into the shadow
// under the claim's epoch.
func (r *rebuild) startWorkers(ctx context.Context, epoch int64) *shadowWorkers {
	sw := &shadowWorkers{started: make([]atomic.Bool, r.cfg.Partitions), failures: make(chan error, r.cfg.Partitions)}
	cfg := workerConfig{
		pool:         r.pool,
		js:           r.js,
		projection:   r.p,
		target:       newTarget(shadowSchema(r.cfg.Schema, r.name), r.name),
		consumerName: func(part int) string { return rebuildConsumerName(r.cfg.Schema, r.name, part) },
		inactive:     10 * time.Minute,
		// Only the rebuild reads them; a server restart costs a new one.
		memory:      true,
		batchSize:   r.opts.BatchSize,
		batchWait:   r.opts.BatchWait,
		maxAttempts: r.opts.MaxAttempts,
		ackWait:     DefaultConfig().AckWait,
		log:         r.log,
		// A rebuild replays old events: their traces ended long ago.
		tracer:    noop.NewTracerProvider().Tracer(""),
		committed: func(s BatchStats) { r.done.Add(uint64(s.Events)) },
		started:   func(part int) { sw.started[part].Store(true) },
	}
	stop, stopWorkers := context.WithCancel(ctx)
	kill, killWorkers := context.WithCancel(context.WithoutCancel(ctx))
	var wg sync.WaitGroup
	for part := range r.cfg.Partitions {
		w := &worker{workerConfig: cfg, partition: part, epoch: epoch}
		wg.Go(func() {
			if err := w.run(stop, kill); err != nil {
				sw.failures <- err
			}
		})
	}
	sw.stop = func() {
		stopWorkers()
		wg.Wait()
		killWorkers()
	}
	return sw
}

// waitCaughtUp reports progress every ProgressEvery until the shadow has
// caught up (see Rebuild), ctx ends, a worker fails or the lock session is
// lost.
func (r *rebuild) waitCaughtUp(ctx context.Context, lock *pgx.Conn, workers *shadowWorkers) error {
	tick := time.NewTicker(r.opts.ProgressEvery)
	defer tick.Stop()
	var targets []uint64 // each partition's last stored event at the previous check
	for {
		select {
		case <-ctx.Done():
			return ctx.Err()
		case err := <-workers.failures:
			return fmt.Errorf("rebuild %s: %w", r.name, err)
		case <-tick.C:
		}
		if err := lock.Ping(ctx); err != nil {
			return fmt.Errorf("rebuild %s: lock session lost: %w", r.name, err)
		}
		pending, err := r.shadowPending(ctx, r.name)
		if err != nil {
			r.log.Warn("cannot read rebuild progress", "error", err)
			continue
		}
		r.report(r.progress(pending, false))
		// The cursors are compared with the heads read at the previous
		// check (at the first, with its own, read before the cursors): a
		// shadow that reached them holds every event stored one check ago.
		heads, err := r.partitionHeads(ctx)
		if err != nil {
			r.log.Warn("cannot read the stream's last sequences", "error", err)
			continue
		}
		if targets == nil {
			targets = heads
		}
		reached, err := r.shadowReached(ctx, r.name, targets)
		if err != nil {
			r.log.Warn("cannot read the shadow checkpoints", "error", err)
			continue
		}
		targets = heads
		if workers.allStarted() && (reached || r.opts.SwapWithin > 0 && pending <= r.opts.SwapWithin) {
			return nil
		}
	}
}

// progress is the rebuild's figures with pending events still to project.
func (r *rebuild) progress(pending uint64, swapped bool) RebuildProgress {
	pr := RebuildProgress{Projection: r.name, Done: r.done.Load(), Elapsed: time.Since(r.start), Swapped: swapped}
	pr.Total = pr.Done + pending
	if s := pr.Elapsed.Seconds(); s > 0 {
		pr.Rate = float64(pr.Done) / s
	}
	return pr
}

// report hands pr to the caller's Progress, if any, and returns it.
func (r *rebuild) report(pr RebuildProgress) RebuildProgress {
	if r.opts.Progress != nil {
		r.opts.Progress(pr)
	}
	return pr
}

// shadowPending sums the rebuild consumers' undelivered and unacknowledged
// events.
func (a *Admin) shadowPending(ctx context.Context, projection string) (uint64, error) {
	stream, err := a.js.Stream(ctx, contract.EventsStream)
	if err != nil {
		return 0, err
	}
	var pending uint64
	for p := range a.cfg.Partitions {
		c, err := stream.Consumer(ctx, rebuildConsumerName(a.cfg.Schema, projection, p))
		if err != nil {
			return 0, err
		}
		info := c.CachedInfo()
		pending += info.NumPending + uint64(info.NumAckPending)
	}
	return pending, nil
}

// partitionHeads returns the stream sequence of each partition's last
// stored event, 0 for a partition without events.
func (a *Admin) partitionHeads(ctx context.Context) ([]uint64, error) {
	stream, err := a.js.Stream(ctx, contract.EventsStream)
	if err != nil {
		return nil, fmt.Errorf("look up stream %s: %w", contract.EventsStream, err)
	}
	heads := make([]uint64, a.cfg.Partitions)
	for p := range heads {
		m, err := stream.GetLastMsgForSubject(ctx, contract.EventPartitionFilter(p))
		switch {
		case errors.Is(err, jetstream.ErrMsgNotFound):
		case err != nil:
			return nil, fmt.Errorf("last event of partition %d: %w", p, err)
		default:
			heads[p] = m.Sequence
		}
	}
	return heads, nil
}

// shadowReached reports whether every shadow checkpoint is at or past its
// partition's target.
func (a *Admin) shadowReached(ctx context.Context, projection string, targets []uint64) (bool, error) {
	rows, err := a.pool.Query(ctx, `SELECT partition, last_sequence FROM `+
		pgx.Identifier{shadowSchema(a.cfg.Schema, projection)}.Sanitize()+`.projection_checkpoints WHERE projection = $1`, projection)
	if err != nil {
		return false, fmt.Errorf("read shadow checkpoints: %w", err)
	}
	cursors := make([]uint64, len(targets))
	var (
		p   int
		seq int64
	)
	if _, err := pgx.ForEachRow(rows, []any{&p, &seq}, func() error {
		if p >= 0 && p < len(cursors) {
			cursors[p] = uint64(seq)
		}
		return nil
	}); err != nil {
		return false, fmt.Errorf("read shadow checkpoints: %w", err)
	}
	for p, target := range targets {
		if cursors[p] < target {
			return false, nil
		}
	}
	return true, nil
}

func (a *Admin) deleteConsumer(ctx context.Context, name string) error {
	stream, err := a.js.Stream(ctx, contract.EventsStream)
	if err != nil {
		return err
	}
	if err := stream.DeleteConsumer(ctx, name); err != nil && !errors.Is(err, jetstream.ErrConsumerNotFound) {
		return err
	}
	return nil
}

// claimShadow records, on the rebuild lock session, a fresh owner epoch for
// every partition of the shadow: the rebuild's workers commit only under
// it, so the workers of an earlier rebuild that lost its lock cannot write
// into this one's shadow.
func (a *Admin) claimShadow(ctx context.Context, lock *pgx.Conn, projection string) (int64, error) {
	var epoch int64
	if err := lock.QueryRow(ctx, "SELECT nextval($1::regclass)",
		pgx.Identifier{a.cfg.Schema, "projection_owner_epochs"}.Sanitize()).Scan(&epoch); err != nil {
		return 0, fmt.Errorf("claim the shadow's partitions: %w", err)
	}
	if _, err := lock.Exec(ctx, `INSERT INTO `+pgx.Identifier{shadowSchema(a.cfg.Schema, projection), "projection_owners"}.Sanitize()+
		` (projection, partition, epoch) SELECT $1, p, $2 FROM generate_series(0, $3 - 1) p`,
		projection, epoch, a.cfg.Partitions); err != nil {
		return 0, fmt.Errorf("claim the shadow's partitions: %w", err)
	}
	return epoch, nil
}

// createShadow makes an empty copy of the projection's tables, and of the
// checkpoint and dead-letter tables, in the shadow schema. Indexes and
// constraints keep their names, so the tables look exactly like the live
// ones once swapped in.
func (a *Admin) createShadow(ctx context.Context, p Projection) error {
	live := a.cfg.Schema
	shadow := shadowSchema(live, p.Name())
	tx, err := a.pool.Begin(ctx)
	if err != nil {
		return err
	}
	defer rollback(ctx, tx)
	sh := pgx.Identifier{shadow}.Sanitize()
	if _, err := tx.Exec(ctx, "DROP SCHEMA IF EXISTS "+sh+" CASCADE"); err != nil {
		return fmt.Errorf("drop old shadow: %w", err)
	}
	if _, err := tx.Exec(ctx, "CREATE SCHEMA "+sh); err != nil {
		return fmt.Errorf("create shadow schema: %w", err)
	}
	tables := append([]string{"projection_checkpoints", "projection_dead_letters", "projection_owners"}, p.Tables()...)
	for _, t := range tables {
		if err := copyTable(ctx, tx, live, shadow, t); err != nil {
			return fmt.Errorf("create shadow of %s: %w", t, err)
		}
	}
	return tx.Commit(ctx)
}

// copyTable creates an empty from.table in schema to, with the same columns,
// defaults, checks, keys and indexes, under the same names.
func copyTable(ctx context.Context, tx pgx.Tx, from, to, table string) error {
	src := pgx.Identifier{from, table}.Sanitize()
	dst := pgx.Identifier{to, table}.Sanitize()
	if _, err := tx.Exec(ctx, "CREATE TABLE "+dst+" (LIKE "+src+" INCLUDING ALL EXCLUDING INDEXES)"); err != nil {
		return err
	}
	// Keys and exclusion constraints bring their indexes, named after them.
	rows, err := tx.Query(ctx, `SELECT conname, pg_get_constraintdef(oid) FROM pg_constraint
		WHERE conrelid = $1::regclass AND contype IN ('p', 'u', 'x') ORDER BY conname`, src)
	if err != nil {
		return err
	}
	var adds []string
	var name, def string
	if _, err := pgx.ForEachRow(rows, []any{&name, &def}, func() error {
		adds = append(adds, "ALTER TABLE "+dst+" ADD CONSTRAINT "+pgx.Identifier{name}.Sanitize()+" "+def)
		return nil
	}); err != nil {
		return err
	}
	for _, add := range adds {
		if _, err := tx.Exec(ctx, add); err != nil {
			return err
		}
	}
	// Other indexes, rebuilt from their definitions with the table swapped:
	// everything from USING on (method, keys, predicate) stays.
	rows, err = tx.Query(ctx, `SELECT c.relname, i.indisunique, pg_get_indexdef(i.indexrelid)
		FROM pg_index i JOIN pg_class c ON c.oid = i.indexrelid
		WHERE i.indrelid = $1::regclass AND NOT EXISTS (SELECT 1 FROM pg_constraint k WHERE k.conindid = i.indexrelid)
		ORDER BY c.relname`, src)
	if err != nil {
		return err
	}
	var (
		creates []string
		unique  bool
	)
	if _, err := pgx.ForEachRow(rows, []any{&name, &unique, &def}, func() error {
		_, rest, ok := strings.Cut(def, " USING ")
		if !ok {
			return fmt.Errorf("unexpected definition of index %s: %s", name, def)
		}
		create := "CREATE INDEX "
		if unique {
			create = "CREATE UNIQUE INDEX "
		}
		creates = append(creates, create+pgx.Identifier{name}.Sanitize()+" ON "+dst+" USING "+rest)
		return nil
	}); err != nil {
		return err
	}
	for _, c := range creates {
		if _, err := tx.Exec(ctx, c); err != nil {
			return err
		}
	}
	return nil
}

// swap moves the shadow tables in and the live ones out, in one
// transaction (see Rebuild). It runs on the rebuild lock session, so it
// commits only while this rebuild still holds the rebuild lock.
func (a *Admin) swap(ctx context.Context, lock *pgx.Conn, p Projection) error {
	name := p.Name()
	live := pgx.Identifier{a.cfg.Schema}.Sanitize()
	shadow := pgx.Identifier{shadowSchema(a.cfg.Schema, name)}.Sanitize()
	retired := pgx.Identifier{retiredSchema(a.cfg.Schema, name)}.Sanitize()
	tx, err := lock.Begin(ctx)
	if err != nil {
		return err
	}
	defer rollback(ctx, tx)
	// Waits for the live batches in flight; later ones wait for the swap.
	if _, err := tx.Exec(ctx, `SELECT 1 FROM `+live+`.projection_checkpoints WHERE projection = $1 FOR UPDATE`, name); err != nil {
		return fmt.Errorf("lock live checkpoints: %w", err)
	}
	steps := []string{
		"DROP SCHEMA IF EXISTS " + retired + " CASCADE",
		"CREATE SCHEMA " + retired,
	}
	for _, t := range p.Tables() {
		id := pgx.Identifier{t}.Sanitize()
		steps = append(steps,
			"ALTER TABLE "+live+"."+id+" SET SCHEMA "+retired,
			"ALTER TABLE "+shadow+"."+id+" SET SCHEMA "+live)
	}
	for _, s := range steps {
		if _, err := tx.Exec(ctx, s); err != nil {
			return fmt.Errorf("%s: %w", s, err)
		}
	}
	if _, err := tx.Exec(ctx, `INSERT INTO `+live+`.projection_checkpoints (projection, partition, last_sequence, last_event_id, last_event_at)
		SELECT projection, partition, last_sequence, last_event_id, last_event_at FROM `+shadow+`.projection_checkpoints WHERE projection = $1
		ON CONFLICT (projection, partition) DO UPDATE
		SET last_sequence = EXCLUDED.last_sequence, last_event_id = EXCLUDED.last_event_id,
			last_event_at = EXCLUDED.last_event_at, updated_at = now()`, name); err != nil {
		return fmt.Errorf("replace checkpoints: %w", err)
	}
	if _, err := tx.Exec(ctx, `DELETE FROM `+live+`.projection_checkpoints c WHERE projection = $1
		AND NOT EXISTS (SELECT 1 FROM `+shadow+`.projection_checkpoints s WHERE s.projection = c.projection AND s.partition = c.partition)`,
		name); err != nil {
		return fmt.Errorf("replace checkpoints: %w", err)
	}
	if _, err := tx.Exec(ctx, `UPDATE `+live+`.projection_dead_letters SET status = 'superseded', updated_at = now()
		WHERE projection = $1 AND status IN ('failed', 'parked')`, name); err != nil {
		return fmt.Errorf("supersede dead letters: %w", err)
	}
	const cols = `projection, partition, stream_sequence, subject, order_id, event_id, event_type, event_version,
		body, error, attempts, status, created_at, updated_at`
	if _, err := tx.Exec(ctx, `INSERT INTO `+live+`.projection_dead_letters (`+cols+`)
		SELECT `+cols+` FROM `+shadow+`.projection_dead_letters ORDER BY id`); err != nil {
		return fmt.Errorf("copy dead letters: %w", err)
	}
	for _, s := range []string{"DROP SCHEMA " + retired + " CASCADE", "DROP SCHEMA " + shadow + " CASCADE"} {
		if _, err := tx.Exec(ctx, s); err != nil {
			return fmt.Errorf("%s: %w", s, err)
		}
	}
	// The new tables carry no grants yet: the projection's runtime role and
	// the reader role need theirs before the live runners write again.
	if _, err := migrations.Grant(ctx, tx, a.cfg.Schema, name, p.Tables()); err != nil {
		return err
	}
	return tx.Commit(ctx)
}
