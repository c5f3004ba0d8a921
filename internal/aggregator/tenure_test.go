package aggregator

import (
	"context"
	"io"
	"log/slog"
	"sync"
	"testing"
	"time"

	"github.com/nats-io/nats.go/jetstream"

	"github.com/jetsource/jetsource/internal/natstest"
)

// fakeClock is a monotonic clock a test moves by hand.
type fakeClock struct {
	mu  sync.Mutex
	now time.Duration
}

func (c *fakeClock) read() time.Duration {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.now
}

func (c *fakeClock) set(d time.Duration) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.now = d
}

// delayedKV is the lease bucket with requests that take rtt on the fake
// clock: the server stores a write half-way through. With failing set, a
// write's answer is lost, as on a timeout.
type delayedKV struct {
	jetstream.KeyValue
	clock   *fakeClock
	rtt     time.Duration
	failing bool
	// stored is when the server stored the last write, on the fake clock.
	stored time.Duration
}

func (kv *delayedKV) write(do func() (uint64, error)) (uint64, error) {
	start := kv.clock.read()
	kv.stored = start + kv.rtt/2
	rev, err := do()
	kv.clock.set(start + kv.rtt)
	if kv.failing {
		return 0, context.DeadlineExceeded
	}
	return rev, err
}

func (kv *delayedKV) Create(ctx context.Context, key string, value []byte, opts ...jetstream.KVCreateOpt) (uint64, error) {
	return kv.write(func() (uint64, error) { return kv.KeyValue.Create(ctx, key, value, opts...) })
}

func (kv *delayedKV) Update(ctx context.Context, key string, value []byte, revision uint64) (uint64, error) {
	return kv.write(func() (uint64, error) { return kv.KeyValue.Update(ctx, key, value, revision) })
}

// TestTenureEndsAMarginBeforeTheServerCanExpireTheLease drives lease
// acquisition and renewal with an injected monotonic clock and requests
// that take 700 ms on it. The tenure must count from the start of the
// request that succeeded (not its end, nor a failed one), end TTL − margin
// after it, and so end before the server can expire the lease: the server
// stores the write after it was sent and expires it TTL later by its own
// clock, which may be ahead of a correct clock by up to the margin.
func TestTenureEndsAMarginBeforeTheServerCanExpireTheLease(t *testing.T) {
	_, _, js := natstest.Streams(t, natstest.Partitions)
	ctx := context.Background()
	const ttl, margin = 5 * time.Second, time.Second
	topo := natstest.Topology(natstest.Partitions)
	topo.LeaseTTL = ttl
	bucket, err := js.CreateOrUpdateKeyValue(ctx, topo.LeaseBucketConfig())
	if err != nil {
		t.Fatal(err)
	}
	clock := &fakeClock{now: time.Hour}
	kv := &delayedKV{KeyValue: bucket, clock: clock, rtt: 700 * time.Millisecond}
	stopped := make(chan struct{})
	c := &coordinator{kv: kv, self: "a", partitions: 1, ttl: ttl, tick: margin, clock: clock.read,
		run:     func(ctx context.Context, _ int, _ *tenure) { <-ctx.Done(); close(stopped) },
		log:     slog.New(slog.NewTextHandler(io.Discard, nil)),
		members: map[string]time.Time{}, owned: map[int]*lease{}, stopping: map[int]<-chan struct{}{}}

	check := func(what string, started time.Duration, l *lease) {
		t.Helper()
		end := started + ttl - margin
		if got := time.Duration(l.tenure.until.Load()); got != end {
			t.Fatalf("%s started at %s: tenure ends at %s, want %s", what, started, got, end)
		}
		for _, skew := range []time.Duration{0, margin / 2, margin} {
			if expiry := kv.stored + ttl - skew; expiry < end {
				t.Fatalf("%s: a server clock %s ahead expires the lease at %s, before the tenure ends at %s", what, skew, expiry, end)
			}
		}
		clock.set(end - time.Nanosecond)
		if !l.tenure.valid() {
			t.Fatalf("%s: tenure over at %s, before its end %s", what, clock.read(), end)
		}
		clock.set(end)
		if l.tenure.valid() {
			t.Fatalf("%s: tenure still valid at its end %s", what, end)
		}
	}

	start := clock.read()
	c.acquire(ctx, 0)
	l := c.owned[0]
	if l == nil {
		t.Fatal("partition not acquired")
	}
	check("the acquisition", start, l)

	start = clock.read() - 2*time.Second // renewed before the tenure ran out
	clock.set(start)
	if !c.renewAll(ctx)[0] {
		t.Fatal("renewal failed")
	}
	check("the renewal", start, l)

	// A renewal whose answer is lost extends nothing and stops the
	// partition at once.
	until := l.tenure.until.Load()
	clock.set(start + time.Second)
	kv.failing = true
	if c.renewAll(ctx)[0] {
		t.Fatal("a renewal without an answer counted")
	}
	if l.tenure.until.Load() != until {
		t.Fatal("a renewal without an answer extended the tenure")
	}
	<-stopped
}
