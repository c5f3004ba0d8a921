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
// while it runs. If a purge fails (a NATS user without the grant, whose
// request gets no answer, say), this consumer acks its commands one by one
// for purgeRetry, then tries a purge again. Handled commands held up behind one that takes long are
// acked before JetStream would redeliver them.
//
// A purge of many commands makes the server recount what every consumer
// of the queue has pending, which costs about as much as the partitions'
// backlog is long; so a deep backlog is purged in bigger runs.
//
// Only run's goroutine settles; deliver and handled come from others.
type settler struct {
	// purge removes the partition's commands below stream sequence below.
	purge   func(ctx context.Context, below uint64) error
	ackWait time.Duration
	obs     Observer
	// maxRun bounds the handled commands kept for a purge: they count
	// against the consumer's MaxAckPending.
	maxRun int
	log    *slog.Logger
	// failed is when a purge last failed; zero if none did.
	failed time.Time

	mu sync.Mutex
	// delivered holds the commands delivered and not yet settled, in
	// stream order.
	delivered []settling
	// behind is how many commands were stored behind the last delivered.
	behind  uint64
	wake    chan struct{}
	closing chan struct{}
	done    chan struct{}
}

type settling struct {
	msg     jetstream.Msg
	seq     uint64
	at      time.Time
	handled bool
	// acked is set when the command was acked while it waited behind an
	// unhandled one.
	acked bool
}

// Purges happen at most every settleEvery and, while commands wait to be
// settled, at least every settleAtLeastEvery, however short their run. A
// purge that gets no answer within purgeTimeout failed, and the next is
// tried purgeRetry later.
const (
	settleEvery        = 50 * time.Millisecond
	settleAtLeastEvery = time.Second
	purgeTimeout       = 2 * time.Second
	purgeRetry         = 30 * time.Second
)

func newSettler(purge func(ctx context.Context, below uint64) error, ackWait time.Duration, maxRun int, obs Observer, log *slog.Logger) *settler {
	s := &settler{purge: purge, ackWait: ackWait, maxRun: maxRun, obs: obs, log: log,
		wake: make(chan struct{}, 1), closing: make(chan struct{}), done: make(chan struct{})}
	go s.run()
	return s
}

// deliver records a delivered command, with the number of commands stored
// behind it; deliveries come in stream order.
func (s *settler) deliver(msg jetstream.Msg, seq, behind uint64) {
	s.mu.Lock()
	s.delivered = append(s.delivered, settling{msg: msg, seq: seq, at: time.Now()})
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
	tick := time.NewTicker(settleAtLeastEvery / 4)
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
			s.ackHeldUp()
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
	acking := !s.failed.IsZero() && time.Since(s.failed) < purgeRetry
	if n == 0 || (!force && !acking && n < min(int(s.behind/2), s.maxRun)) {
		s.mu.Unlock()
		return false
	}
	head := s.delivered[:n:n]
	s.delivered = s.delivered[n:]
	s.mu.Unlock()
	if !acking {
		ctx, cancel := context.WithTimeout(context.Background(), purgeTimeout)
		err := s.purge(ctx, head[n-1].seq+1)
		cancel()
		if err == nil {
			s.failed = time.Time{}
			s.obs.Settled(n-countAcked(head), true)
			return true
		}
		if s.failed.IsZero() {
			s.log.Warn("purging handled commands failed; acking them one by one", "error", err, "retry_in", purgeRetry)
		}
		s.failed = time.Now()
	}
	var unacked []jetstream.Msg
	for _, c := range head {
		if !c.acked {
			unacked = append(unacked, c.msg)
		}
	}
	s.ack(unacked)
	return true
}

// ackHeldUp acks the handled commands behind an unhandled one that has
// waited a third of the ack wait: the purge cannot pass it, and JetStream
// would redeliver them, which restarts the partition.
func (s *settler) ackHeldUp() {
	s.mu.Lock()
	var held []jetstream.Msg
	if len(s.delivered) > 0 && !s.delivered[0].handled && time.Since(s.delivered[0].at) > s.ackWait/3 {
		for i := range s.delivered {
			if c := &s.delivered[i]; c.handled && !c.acked {
				c.acked = true
				held = append(held, c.msg)
			}
		}
	}
	s.mu.Unlock()
	if len(held) > 0 {
		s.ack(held)
	}
}

// ack acks msgs and counts those acked.
func (s *settler) ack(msgs []jetstream.Msg) {
	acked := 0
	for _, m := range msgs {
		if err := m.Ack(); err != nil {
			// Its result is stored; a redelivery will find it.
			s.log.Warn("ack failed", "subject", m.Subject(), "error", err)
			continue
		}
		acked++
	}
	s.obs.Settled(acked, false)
}

func countAcked(commands []settling) int {
	n := 0
	for _, c := range commands {
		if c.acked {
			n++
		}
	}
	return n
}
