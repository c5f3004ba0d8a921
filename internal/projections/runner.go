package projections

import (
	"context"
	"errors"
	"fmt"
	"hash/fnv"
	"slices"
	"sync/atomic"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"
	"github.com/nats-io/nats.go/jetstream"
)

// Runner projects the partitions of one projection that this replica owns.
// Replicas of the same projection share its partitions: each partition is
// owned through a Postgres session advisory lock held on a connection of
// its own, and every replica holds the share that shareOf assigns it among
// the replicas with a fresh heartbeat in projection_replicas.
type Runner struct {
	pool *pgxpool.Pool
	js   jetstream.JetStream
	cfg  Config

	target target
	class  int32

	owned     atomic.Pointer[[]int]
	lastBeat  atomic.Int64 // unix nanoseconds of the last successful heartbeat
	isRunning atomic.Bool
	// loss is set while the events stream lacks an event the projection
	// projected; the runner then projects nothing.
	loss atomic.Pointer[LossError]
}

// NewRunner checks cfg and returns a runner. The schema must have been
// migrated (package migrations).
func NewRunner(pool *pgxpool.Pool, js jetstream.JetStream, cfg Config) (*Runner, error) {
	cfg.setDefaults()
	if err := cfg.Validate(); err != nil {
		return nil, fmt.Errorf("projections config: %w", err)
	}
	r := &Runner{
		pool:   pool,
		js:     js,
		cfg:    cfg,
		target: newTarget(cfg.Schema, cfg.Projection.Name()),
		class:  lockClass(cfg.Schema, cfg.Projection.Name()),
	}
	r.owned.Store(&[]int{})
	return r, nil
}

// Owned returns the partitions the replica owns now, in order.
func (r *Runner) Owned() []int { return slices.Clone(*r.owned.Load()) }

// Ready reports whether the runner is running, its lock session answered a
// heartbeat recently, and no events the projection projected are missing
// (see Loss).
func (r *Runner) Ready() bool {
	beat := r.lastBeat.Load()
	return r.isRunning.Load() && beat > 0 && time.Since(time.Unix(0, beat)) < 3*r.cfg.Heartbeat && r.loss.Load() == nil
}

// Loss returns a *LossError while the events stream lacks an event the
// projection has projected: the runner has stopped every partition, and
// goes on by itself once a rebuild has set the cursors to events the stream
// holds. It returns nil otherwise.
func (r *Runner) Loss() error {
	if l := r.loss.Load(); l != nil {
		return l
	}
	return nil
}

// ErrAlreadyRunning means Run was called on a runner that is running.
var ErrAlreadyRunning = errors.New("runner is already running")

// Run projects until ctx is canceled, then drains: it stops fetching, lets
// each partition finish and commit its batch (within DrainTimeout), releases
// the partitions and leaves the replica table, and returns nil. Failures
// of Postgres or NATS while it runs are logged and retried, not returned:
// Ready reports them.
func (r *Runner) Run(ctx context.Context) error {
	if !r.isRunning.CompareAndSwap(false, true) {
		return ErrAlreadyRunning
	}
	defer r.isRunning.Store(false)
	o := &owner{Runner: r, held: map[int]*partitionRun{}, exited: make(chan struct{}, 1)}
	defer o.shutdown()
	tick := time.NewTicker(r.cfg.Heartbeat)
	defer tick.Stop()
	for {
		o.tick(ctx)
		select {
		case <-ctx.Done():
			return nil
		case <-tick.C:
		case <-o.exited:
		}
	}
}

// partitionRun is a running worker.
type partitionRun struct {
	stop, kill context.CancelFunc
	done       chan struct{}
	err        error // set before done is closed
}

// owner is the state of Run: the lock session and the partitions it holds.
// Only Run's goroutine uses it.
type owner struct {
	*Runner
	conn   *pgx.Conn
	held   map[int]*partitionRun
	exited chan struct{}
}

// tick renews the heartbeat, reaps workers that ended on their own, and
// releases or takes partitions until the replica holds its share (shareOf).
func (o *owner) tick(ctx context.Context) {
	if ctx.Err() != nil {
		return
	}
	log := o.cfg.Logger
	if o.conn == nil {
		if err := o.connect(ctx); err != nil {
			log.Warn("cannot open the lock session", "error", err)
			return
		}
	}
	changed := false
	for p, run := range o.held {
		select {
		case <-run.done:
			log.Warn("partition stopped; releasing it", "partition", p, "error", run.err)
			delete(o.held, p)
			o.unlock(ctx, p)
			changed = true
		default:
		}
	}
	if o.conn == nil { // an unlock found the session dead
		return
	}
	live, taken, err := o.heartbeat(ctx)
	if err != nil {
		log.Error("lock session lost; stopping every partition", "error", err)
		o.loseAll()
		return
	}
	o.lastBeat.Store(time.Now().UnixNano())
	if o.checkLoss(ctx) {
		if len(o.held) > 0 {
			o.halt(ctx)
			changed = true
		}
		if changed {
			o.recordOwned()
		}
		return
	}
	share := shareOf(o.cfg.Partitions, live, o.cfg.ReplicaID)
	if extra := len(o.held) - share; extra > 0 {
		o.release(ctx, o.pickRelease(extra))
		changed = true
	}
	for _, p := range o.candidates(taken) {
		if len(o.held) >= share || ctx.Err() != nil {
			break
		}
		epoch, ok, err := o.claim(ctx, p)
		if err != nil {
			log.Error("lock session lost while taking partitions", "error", err)
			o.loseAll()
			return
		}
		if ok {
			o.start(p, epoch)
			changed = true
		}
	}
	if changed {
		o.recordOwned()
	}
}

func (o *owner) connect(ctx context.Context) error {
	cfg := o.pool.Config().ConnConfig
	conn, err := pgx.ConnectConfig(ctx, cfg)
	if err != nil {
		return err
	}
	o.conn = conn
	return nil
}

// sessionContext bounds a query on the lock session without passing on
// ctx's cancellation: pgx closes a connection whose query is canceled, and
// a shutdown that lands mid-query would then lose the session it needs to
// unlock the partitions and leave the replica table. The bound is twice
// the replica TTL, not a heartbeat or two: a slow database (a load spike)
// must not cost the session and with it every partition's lock, while a
// replica that stops heartbeating is counted out by the others after the
// TTL anyway, and cannot lose a partition it still holds the lock of.
func (o *owner) sessionContext(ctx context.Context) (context.Context, context.CancelFunc) {
	return context.WithTimeout(context.WithoutCancel(ctx), 2*o.cfg.ReplicaTTL)
}

// claim takes partition p's advisory lock on the lock session and, in the
// same statement, records a fresh owner epoch for it. Because the session
// holds the lock when the epoch is written, no other runner can claim p
// until this one's session ends; the epoch then keeps the workers of a
// lost session from committing (see migration 0005).
func (o *owner) claim(ctx context.Context, p int) (epoch int64, ok bool, err error) {
	ctx, cancel := o.sessionContext(ctx)
	defer cancel()
	err = o.conn.QueryRow(ctx, o.target.sql.claim, o.target.projection, p, o.class, int32(p)).Scan(&epoch)
	switch {
	case errors.Is(err, pgx.ErrNoRows):
		return 0, false, nil
	case err != nil:
		return 0, false, fmt.Errorf("claim partition %d: %w", p, err)
	}
	return epoch, true, nil
}

// heartbeat records the replica as alive, forgets long-dead ones and
// returns the ids of the live replicas (itself included), sorted, and which
// partitions are locked by anyone. It doubles as the lock session's ping.
func (o *owner) heartbeat(ctx context.Context) (live []string, taken map[int]bool, err error) {
	t := o.target.sql.searchPath
	ctx, cancel := o.sessionContext(ctx)
	defer cancel()
	b := &pgx.Batch{}
	b.Queue(`INSERT INTO `+t+`.projection_replicas (projection, replica_id) VALUES ($1, $2)
		ON CONFLICT (projection, replica_id) DO UPDATE SET heartbeat_at = now()`, o.target.projection, o.cfg.ReplicaID)
	b.Queue(`DELETE FROM `+t+`.projection_replicas WHERE projection = $1 AND heartbeat_at < now() - $2::interval`,
		o.target.projection, 100*o.cfg.ReplicaTTL)
	b.Queue(`SELECT replica_id FROM `+t+`.projection_replicas
		WHERE projection = $1 AND (replica_id = $2 OR heartbeat_at > now() - $3::interval)`,
		o.target.projection, o.cfg.ReplicaID, o.cfg.ReplicaTTL).Query(func(rows pgx.Rows) error {
		var id string
		_, err := pgx.ForEachRow(rows, []any{&id}, func() error { live = append(live, id); return nil })
		return err
	})
	taken = map[int]bool{}
	b.Queue(`SELECT objid::bigint FROM pg_locks WHERE locktype = 'advisory' AND granted AND objsubid = 2
		AND database = (SELECT oid FROM pg_database WHERE datname = current_database()) AND classid::bigint = $1`,
		int64(uint32(o.class))).Query(func(rows pgx.Rows) error {
		var key int64
		_, err := pgx.ForEachRow(rows, []any{&key}, func() error { taken[int(int32(uint32(key)))] = true; return nil })
		return err
	})
	if err := o.conn.SendBatch(ctx, b).Close(); err != nil {
		return nil, nil, fmt.Errorf("heartbeat: %w", err)
	}
	if !slices.Contains(live, o.cfg.ReplicaID) { // the upsert above makes it so; shareOf relies on it
		live = append(live, o.cfg.ReplicaID)
	}
	slices.Sort(live)
	return live, taken, nil
}

// shareOf is how many partitions the replica self should hold among the
// live replicas (sorted ids, self included): floor(partitions / n), and one
// more for the first partitions mod n of them. Every replica computes the
// same split from the same table, so the shares add up to the partition
// count: no partition stays free while a replica holds none, and a
// replica beyond the partition count holds none. Rounding every share up
// instead would leave a newcomer empty-handed whenever the others already
// hold the rounded-up share (16 partitions over 4 replicas, then a 5th).
func shareOf(partitions int, live []string, self string) int {
	i, _ := slices.BinarySearch(live, self)
	n := len(live)
	share := partitions / n
	if i < partitions%n {
		share++
	}
	return share
}

// candidates lists the free partitions, starting at a point that depends on
// the replica id so that replicas starting together try different ones.
func (o *owner) candidates(taken map[int]bool) []int {
	h := fnv.New32a()
	h.Write([]byte(o.cfg.ReplicaID))
	start := int(h.Sum32() % uint32(o.cfg.Partitions))
	var out []int
	for i := range o.cfg.Partitions {
		p := (start + i) % o.cfg.Partitions
		if !taken[p] && o.held[p] == nil {
			out = append(out, p)
		}
	}
	return out
}

// pickRelease chooses n held partitions to give up: the highest numbers.
func (o *owner) pickRelease(n int) []int {
	ps := make([]int, 0, len(o.held))
	for p := range o.held {
		ps = append(ps, p)
	}
	slices.Sort(ps)
	return ps[len(ps)-n:]
}

func (o *owner) start(p int, epoch int64) {
	stop, cancelStop := context.WithCancel(context.Background())
	kill, cancelKill := context.WithCancel(context.Background())
	run := &partitionRun{stop: cancelStop, kill: cancelKill, done: make(chan struct{})}
	o.held[p] = run
	w := &worker{workerConfig: o.workerConfig(), partition: p, epoch: epoch}
	exited := o.exited
	go func() {
		defer close(run.done)
		run.err = w.run(stop, kill)
		cancelStop()
		cancelKill()
		select {
		case exited <- struct{}{}:
		default:
		}
	}()
	o.cfg.Logger.Info("partition acquired", "partition", p)
}

func (o *owner) workerConfig() workerConfig {
	return workerConfig{
		pool:         o.pool,
		js:           o.js,
		projection:   o.cfg.Projection,
		target:       o.target,
		consumerName: func(p int) string { return ConsumerName(o.cfg.Schema, o.target.projection, p) },
		batchSize:    o.cfg.BatchSize,
		batchWait:    o.cfg.BatchWait,
		maxAttempts:  o.cfg.MaxAttempts,
		ackWait:      o.cfg.AckWait,
		log:          o.cfg.Logger.With("projection", o.target.projection),
		tracer:       o.cfg.Tracer.Tracer("github.com/jetsource/jetsource/internal/projections"),
		committed:    o.batchCommitted,
	}
}

func (o *owner) batchCommitted(s BatchStats) {
	if o.cfg.Observer != nil {
		o.cfg.Observer.BatchCommitted(s)
	}
}

// release stops the given partitions' workers, letting them finish their
// batches, and then unlocks the partitions.
func (o *owner) release(ctx context.Context, ps []int) {
	o.drain(ps)
	for _, p := range ps {
		delete(o.held, p)
		o.unlock(ctx, p)
		o.cfg.Logger.Info("partition released", "partition", p)
	}
}

// drain stops workers gracefully, in parallel, and kills those that take
// longer than DrainTimeout.
func (o *owner) drain(ps []int) {
	for _, p := range ps {
		o.held[p].stop()
	}
	deadline, cancel := context.WithTimeout(context.Background(), o.cfg.DrainTimeout)
	defer cancel()
	for _, p := range ps {
		run := o.held[p]
		select {
		case <-run.done:
			continue
		default:
		}
		select {
		case <-run.done:
		case <-deadline.Done():
			o.cfg.Logger.Warn("partition did not drain in time; abandoning its batch", "partition", p)
			run.kill()
			<-run.done
		}
	}
}

func (o *owner) unlock(ctx context.Context, p int) {
	if o.conn == nil {
		return
	}
	ctx, cancel := o.sessionContext(ctx)
	defer cancel()
	if _, err := o.conn.Exec(ctx, "SELECT pg_advisory_unlock($1, $2)", o.class, int32(p)); err != nil {
		o.cfg.Logger.Warn("unlock failed; dropping the lock session", "partition", p, "error", err)
		o.loseAll()
	}
}

// loseAll kills every worker at once (their locks are gone or about to be)
// and closes the lock session; the next tick opens a new one.
func (o *owner) loseAll() {
	for _, run := range o.held {
		run.kill()
		run.stop()
	}
	for p, run := range o.held {
		<-run.done
		delete(o.held, p)
	}
	if o.conn != nil {
		ctx, cancel := context.WithTimeout(context.Background(), time.Second)
		o.conn.Close(ctx)
		cancel()
		o.conn = nil
	}
	o.lastBeat.Store(0)
	o.recordOwned()
}

// shutdown drains every partition, unlocks them and leaves the replica
// table, so the other replicas take over at their next heartbeat. Run's
// context is canceled by then: every step has a deadline of its own.
func (o *owner) shutdown() {
	ps := make([]int, 0, len(o.held))
	for p := range o.held {
		ps = append(ps, p)
	}
	o.drain(ps)
	clear(o.held)
	o.recordOwned()
	if o.leaveOnSession() {
		return
	}
	// Without the lock session (lost, or never opened) the row would stay
	// and count as a live replica for ReplicaTTL.
	ctx, cancel := context.WithTimeout(context.Background(), shutdownTimeout)
	defer cancel()
	if _, err := o.pool.Exec(ctx, o.leaveSQL(), o.target.projection, o.cfg.ReplicaID); err != nil {
		o.cfg.Logger.Warn("leaving the replica table failed", "error", err)
	}
}

// leaveOnSession unlocks every partition, deletes the replica's row and
// closes the lock session. It reports whether the row was deleted.
func (o *owner) leaveOnSession() bool {
	if o.conn == nil {
		return false
	}
	ctx, cancel := context.WithTimeout(context.Background(), shutdownTimeout)
	defer cancel()
	defer func() {
		o.conn.Close(ctx)
		o.conn = nil
	}()
	if _, err := o.conn.Exec(ctx, "SELECT pg_advisory_unlock_all()"); err != nil {
		o.cfg.Logger.Warn("unlock on shutdown failed", "error", err)
	}
	if _, err := o.conn.Exec(ctx, o.leaveSQL(), o.target.projection, o.cfg.ReplicaID); err != nil {
		o.cfg.Logger.Warn("leaving the replica table on the lock session failed; trying the pool", "error", err)
		return false
	}
	return true
}

// shutdownTimeout bounds each step of a stopping runner's clean-up.
const shutdownTimeout = 5 * time.Second

func (o *owner) leaveSQL() string {
	return `DELETE FROM ` + o.target.sql.searchPath + `.projection_replicas WHERE projection = $1 AND replica_id = $2`
}

// recordOwned makes the partitions held the replica's owned set: Owned
// returns it, the observer and the log hear of it.
func (o *owner) recordOwned() {
	ps := make([]int, 0, len(o.held))
	for p := range o.held {
		ps = append(ps, p)
	}
	slices.Sort(ps)
	o.owned.Store(&ps)
	if o.cfg.Observer != nil {
		o.cfg.Observer.OwnershipChanged(o.target.projection, slices.Clone(ps))
	}
	o.cfg.Logger.Info("partitions owned", "projection", o.target.projection, "partitions", ps)
}
