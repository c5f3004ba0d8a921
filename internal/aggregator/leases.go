package aggregator

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/nats-io/nats.go/jetstream"

	"github.com/jetsource/jetsource/internal/es"
)

const (
	memberPrefix    = "members."
	partitionPrefix = "partitions."
)

// coordinator makes replicas split the command partitions: each announces
// itself under members.<id>, all compute the same assignment from the
// sorted live members (partition p to member p mod n, so shares differ by
// at most one), and a replica runs a partition only while it holds the
// partition's lease, a key created with compare-and-set and renewed every
// tick. Keys expire after the TTL, so a dead replica's members entry and
// leases disappear and the survivors take its partitions over.
type coordinator struct {
	kv         jetstream.KeyValue
	self       string
	partitions int
	ttl, tick  time.Duration
	// clock measures tenures (see tenure).
	clock monotonic
	// run handles one partition until its context ends or its tenure does.
	run func(ctx context.Context, partition int, t *tenure)
	log *slog.Logger

	mu      sync.Mutex
	members map[string]time.Time // last heartbeat seen
	owned   map[int]*lease
	// stopping holds the workers of partitions this replica gave up or
	// lost that have not finished yet: a partition is not started again
	// while its previous worker may still act on it.
	stopping map[int]<-chan struct{}
	wg       sync.WaitGroup
}

// lease is a partition this replica holds.
type lease struct {
	revision uint64
	tenure   *tenure
	cancel   context.CancelFunc
	// done closes when the partition's worker has stopped.
	done chan struct{}
}

// monotonic reads a clock that only moves forward, at the rate of real
// time: the time since some origin on Go's monotonic clock, which neither
// NTP nor an operator steps, unlike the wall clock.
type monotonic func() time.Duration

// systemClock is the process's monotonic clock.
func systemClock() monotonic {
	origin := time.Now()
	return func() time.Duration { return time.Since(origin) }
}

// tenure is how long this replica may still act on a partition, on its
// monotonic clock: until TTL − margin after the start of its last
// successful lease renewal, the margin being one tick (TTL/5).
//
// The lease expires at the NATS server TTL after the server stored the
// renewal, by the server's clock. The server stores it after the replica
// sent it, so on a correct server clock the lease outlives the tenure by
// the margin plus the request's delay. The margin absorbs what the
// server's clock can do wrong meanwhile: run fast (by margin/TTL, 20%),
// step forward, or, after the lease bucket's leader moves, be another
// host's clock ahead of the first. All together they must stay under the
// margin (1 s at the default TTL of 5 s; NTP keeps hosts within
// milliseconds). Within it, a worker that stops at the end of its tenure
// never overlaps the next owner, even when its renewals fail silently;
// beyond it, two owners may overlap, and the conditional append still
// keeps every order's events exact.
type tenure struct {
	clock monotonic
	until atomic.Int64 // on clock
}

func (t *tenure) extend(to time.Duration) { t.until.Store(int64(to)) }

// left is how much of the tenure remains; negative once it ended.
func (t *tenure) left() time.Duration { return time.Duration(t.until.Load()) - t.clock() }

// deadline is when the tenure ends, as a time whose monotonic reading
// contexts and timers use.
func (t *tenure) deadline() time.Time { return time.Now().Add(t.left()) }

// valid reports whether the tenure has not ended yet.
func (t *tenure) valid() bool { return t.left() > 0 }

func (c *coordinator) memberKey() string { return memberPrefix + c.self }

func leaseKey(partition int) string { return partitionPrefix + strconv.Itoa(partition) }

// loop coordinates until ctx ends or the membership watch fails. Either
// way it then stops every partition worker (each finishes its command in
// hand) and gives the leases and membership up, so the other replicas take
// over at once.
func (c *coordinator) loop(ctx context.Context) error {
	watchCtx, stopWatch := context.WithCancel(context.WithoutCancel(ctx))
	defer stopWatch()
	w, err := c.kv.Watch(watchCtx, memberPrefix+"*")
	if err != nil {
		return fmt.Errorf("watch aggregator members: %w", err)
	}
	defer func() { _ = w.Stop() }()
	defer c.shutdown()

	// Know the current members before claiming anything.
	for listed := false; !listed; {
		select {
		case <-ctx.Done():
			return nil
		case e, ok := <-w.Updates():
			switch {
			case !ok:
				return errors.New("aggregator member watch closed")
			case e == nil:
				listed = true
			default:
				c.seen(e)
			}
		}
	}
	c.heartbeat(ctx)
	c.rebalance(ctx)
	ticker := time.NewTicker(c.tick)
	defer ticker.Stop()
	failures := 0
	for {
		select {
		case <-ctx.Done():
			return nil
		case e, ok := <-w.Updates():
			if !ok {
				return errors.New("aggregator member watch closed")
			}
			if e != nil {
				c.seen(e)
			}
		case <-ticker.C:
			if c.heartbeat(ctx) {
				failures = 0
			} else if failures++; failures*int(c.tick) >= int(c.ttl) {
				// The bucket has not answered for a whole TTL: every lease
				// has lapsed. Start over, reopening the bucket and the
				// watch.
				return fmt.Errorf("lease bucket %s unreachable for %s", es.LeaseBucket, c.ttl)
			}
			c.rebalance(ctx)
		}
	}
}

func (c *coordinator) seen(e jetstream.KeyValueEntry) {
	id := strings.TrimPrefix(e.Key(), memberPrefix)
	c.mu.Lock()
	defer c.mu.Unlock()
	if e.Operation() == jetstream.KeyValuePut {
		c.members[id] = time.Now()
	} else {
		delete(c.members, id)
	}
}

// heartbeat announces this replica; false if the bucket did not answer.
func (c *coordinator) heartbeat(ctx context.Context) bool {
	op, cancel := context.WithTimeout(ctx, c.tick)
	defer cancel()
	if _, err := c.kv.Put(op, c.memberKey(), []byte(time.Now().UTC().Format(time.RFC3339Nano))); err != nil {
		c.log.Warn("aggregator heartbeat failed", "error", err)
		return false
	}
	c.mu.Lock()
	c.members[c.self] = time.Now()
	c.mu.Unlock()
	return true
}

// assignment is the partitions this replica should run given the live
// members. The replica counts itself live although its own heartbeat may
// not have succeeded yet (a NATS too slow to answer in a tick): it is
// running, and it runs a partition only once it holds the lease anyway.
func (c *coordinator) assignment() map[int]bool {
	live := []string{c.self}
	c.mu.Lock()
	for id, at := range c.members {
		if id != c.self && time.Since(at) < c.ttl {
			live = append(live, id)
		}
	}
	c.mu.Unlock()
	slices.Sort(live)
	idx := slices.Index(live, c.self)
	want := map[int]bool{}
	for p := range c.partitions {
		if p%len(live) == idx {
			want[p] = true
		}
	}
	return want
}

func (c *coordinator) rebalance(ctx context.Context) {
	want := c.assignment()
	for p, l := range c.owned {
		select {
		case <-l.done:
			// The worker ended by itself (it never does unless its context
			// was canceled): forget the partition and let the lease lapse.
			delete(c.owned, p)
		default:
		}
	}
	for p := range c.renewAll(ctx) {
		if !want[p] {
			c.release(p, c.owned[p])
		}
	}
	for p := range want {
		if _, ok := c.owned[p]; !ok {
			c.acquire(ctx, p)
		}
	}
}

// renewAll extends every lease held and returns the partitions renewed. The
// renewals go out at once: one after the other, behind a connection busy
// with commands, the last of a round could start after its tenure ended. A
// replica that cannot prove it still holds a lease stops the partition at
// once, since another may own it now.
func (c *coordinator) renewAll(ctx context.Context) map[int]bool {
	errs := make(map[int]error, len(c.owned))
	var (
		mu sync.Mutex
		wg sync.WaitGroup
	)
	for p, l := range c.owned {
		wg.Go(func() {
			op, cancel := context.WithTimeout(ctx, c.tick)
			defer cancel()
			started := c.clock()
			rev, err := c.kv.Update(op, leaseKey(p), []byte(c.self), l.revision)
			if err == nil {
				l.revision = rev
				l.tenure.extend(started + c.ttl - c.tick)
			}
			mu.Lock()
			errs[p] = err
			mu.Unlock()
		})
	}
	wg.Wait()
	renewed := make(map[int]bool, len(errs))
	for p, err := range errs {
		if err == nil {
			renewed[p] = true
			continue
		}
		l := c.owned[p]
		c.log.Warn("partition lease lost; stopping the partition", "partition", p, "error", err)
		l.cancel()
		delete(c.owned, p)
		c.stopping[p] = l.done
	}
	return renewed
}

// stillStopping reports whether p's previous worker has not finished yet.
func (c *coordinator) stillStopping(p int) bool {
	done, ok := c.stopping[p]
	if !ok {
		return false
	}
	select {
	case <-done:
		delete(c.stopping, p)
		return false
	default:
		return true
	}
}

func (c *coordinator) acquire(ctx context.Context, p int) {
	if c.stillStopping(p) {
		return
	}
	op, cancel := context.WithTimeout(ctx, c.tick)
	defer cancel()
	started := c.clock()
	rev, err := c.kv.Create(op, leaseKey(p), []byte(c.self))
	if errors.Is(err, jetstream.ErrKeyExists) {
		rev, err = c.reclaim(op, p)
	}
	if err != nil {
		if !errors.Is(err, jetstream.ErrKeyExists) {
			c.log.Warn("partition lease not acquired", "partition", p, "error", err)
		}
		return
	}
	workCtx, stop := context.WithCancel(context.WithoutCancel(ctx))
	l := &lease{revision: rev, tenure: &tenure{clock: c.clock}, cancel: stop, done: make(chan struct{})}
	l.tenure.extend(started + c.ttl - c.tick)
	c.owned[p] = l
	c.log.Info("partition acquired", "partition", p)
	c.wg.Go(func() {
		defer close(l.done)
		c.run(workCtx, p, l.tenure)
	})
}

// reclaim takes over a lease that a previous run of this same replica (a
// restart after a crash) still holds, instead of waiting for it to expire.
// Replica ids must therefore be unique among running replicas.
func (c *coordinator) reclaim(ctx context.Context, p int) (uint64, error) {
	e, err := c.kv.Get(ctx, leaseKey(p))
	if err != nil {
		return 0, err
	}
	if string(e.Value()) != c.self {
		return 0, jetstream.ErrKeyExists
	}
	return c.kv.Update(ctx, leaseKey(p), []byte(c.self), e.Revision())
}

// release stops p's worker and, once it has finished its command in hand,
// deletes the lease. The lease is deleted with compare-and-set on the
// revision last renewed; if the worker takes longer than the TTL the lease
// lapses instead, and the next owner waits for that.
func (c *coordinator) release(p int, l *lease) {
	delete(c.owned, p)
	c.stopping[p] = l.done
	l.cancel()
	c.wg.Go(func() {
		<-l.done
		op, cancel := context.WithTimeout(context.Background(), c.tick)
		defer cancel()
		if err := c.kv.Delete(op, leaseKey(p), jetstream.LastRevision(l.revision)); err != nil {
			c.log.Warn("partition lease not released; it will expire", "partition", p, "error", err)
		}
		c.log.Info("partition released", "partition", p)
	})
}

func (c *coordinator) shutdown() {
	for p, l := range c.owned {
		c.release(p, l)
	}
	c.wg.Wait()
	op, cancel := context.WithTimeout(context.Background(), c.tick)
	defer cancel()
	if err := c.kv.Delete(op, c.memberKey()); err != nil {
		c.log.Warn("aggregator membership not withdrawn; it will expire", "error", err)
	}
}
