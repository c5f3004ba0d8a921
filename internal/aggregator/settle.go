package aggregator

import (
	"cmp"
	"context"
	"log/slog"
	"slices"
	"sync"
	"time"

	"github.com/nats-io/nats.go/jetstream"
)

// settler takes a partition's handled commands off the work queue. Acking
// each would make JetStream delete each: a replicated, fsync'd write per
// command, as costly as the command's event. Instead the run of handled
// commands at the head of the partition is purged in one write, while the
// next commands are handled.
//
// A command is handled once its result is stored. Until it is purged, a new
// consumer (after a crash, a failover) delivers it again and finds its
// result, as it would had its ack been lost. The purge also takes the
// commands off the consumer's pending list, so they are not redelivered
// while it runs. If a purge fails (a server that refuses it, say), the
// commands are acked one by one instead.
//
// A purge of many commands makes the server recount what every consumer
// of the queue has pending, which costs about as much as the partitions'
// backlog is long; so a deep backlog is purged in bigger runs.
type settler struct {
	// purge removes the partition's commands below stream sequence below.
	purge   func(ctx context.Context, below uint64) error
	timeout time.Duration
	obs     Observer
	// maxRun bounds the handled commands kept for a purge: they count
	// against the consumer's MaxAckPending.
	maxRun int
	log    *slog.Logger

	mu sync.Mutex
	// delivered holds the commands delivered and not yet settled, in
	// stream order.
	delivered []settling
	// behind is how many commands were stored behind the last delivered.
	behind  uint64
	wake    chan struct{}
	closing chan struct{}
	done    chan struct{}
	// warned is set once a failed purge was logged.
	warned bool
}

type settling struct {
	msg     jetstream.Msg
	seq     uint64
	handled bool
}

// Purges happen at most every settleEvery and, while commands wait to be
// settled, at least every settleAtLeastEvery, however short their run.
const (
	settleEvery        = 50 * time.Millisecond
	settleAtLeastEvery = time.Second
)

func newSettler(purge func(ctx context.Context, below uint64) error, timeout time.Duration, maxRun int, obs Observer, log *slog.Logger) *settler {
	s := &settler{purge: purge, timeout: timeout, maxRun: maxRun, obs: obs, log: log,
		wake: make(chan struct{}, 1), closing: make(chan struct{}), done: make(chan struct{})}
	go s.run()
	return s
}

// deliver records a delivered command, with the number of commands stored
// behind it; deliveries come in stream order.
func (s *settler) deliver(msg jetstream.Msg, seq, behind uint64) {
	s.mu.Lock()
	s.delivered = append(s.delivered, settling{msg: msg, seq: seq})
	s.behind = behind
	s.mu.Unlock()
}

// handled marks the command at stream sequence seq handled.
func (s *settler) handled(seq uint64) {
	s.mu.Lock()
	if i, ok := slices.BinarySearchFunc(s.delivered, seq, func(c settling, seq uint64) int { return cmp.Compare(c.seq, seq) }); ok {
		s.delivered[i].handled = true
	}
	s.mu.Unlock()
	select {
	case s.wake <- struct{}{}:
	default:
	}
}

func (s *settler) run() {
	defer close(s.done)
	tick := time.NewTicker(settleAtLeastEvery)
	defer tick.Stop()
	pause := time.NewTimer(0)
	defer pause.Stop()
	var last time.Time
	for {
		force := false
		select {
		case <-s.wake:
		case <-tick.C:
			force = time.Since(last) >= settleAtLeastEvery
		case <-s.closing:
			s.settle(true)
			return
		}
		if !s.settle(force) {
			continue
		}
		last = time.Now()
		pause.Reset(settleEvery)
		select {
		case <-pause.C:
		case <-s.closing:
			s.settle(true)
			return
		}
	}
}

// close settles what is handled by now and stops; it is called once no
// command is being handled any more.
func (s *settler) close() {
	close(s.closing)
	<-s.done
}

// settle purges the handled commands at the head of the partition if
// there are any and, unless forced, if their run is at least half as long
// as the backlog behind them (or maxRun). It reports whether it did.
func (s *settler) settle(force bool) bool {
	s.mu.Lock()
	n := 0
	for n < len(s.delivered) && s.delivered[n].handled {
		n++
	}
	if n == 0 || (!force && n < min(int(s.behind/2), s.maxRun)) {
		s.mu.Unlock()
		return false
	}
	head := s.delivered[:n:n]
	s.delivered = s.delivered[n:]
	s.mu.Unlock()
	ctx, cancel := context.WithTimeout(context.Background(), s.timeout)
	err := s.purge(ctx, head[n-1].seq+1)
	cancel()
	if err == nil {
		s.obs.Settled(n, true)
		return true
	}
	if !s.warned {
		s.warned = true
		s.log.Warn("purging handled commands failed; acking them one by one", "error", err)
	}
	for _, c := range head {
		if err := c.msg.Ack(); err != nil {
			// Its result is stored; a redelivery will find it.
			s.log.Warn("ack failed", "subject", c.msg.Subject(), "error", err)
		}
	}
	s.obs.Settled(n, false)
	return true
}
