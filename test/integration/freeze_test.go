package integration

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/nats-io/nats.go/jetstream"

	"github.com/jetsource/jetsource/contract"
	"github.com/jetsource/jetsource/internal/es"
	"github.com/jetsource/jetsource/internal/eventually"
	"github.com/jetsource/jetsource/internal/workload"
)

// TestAggregatorFrozenWhileHoldingCommands freezes aggregator replicas with
// SIGSTOP while they hold commands (delivered, not acknowledged), lets the
// other replica take their partitions over, and thaws them: a thawed
// replica finds its tenure over on its monotonic clock and stops those
// partitions without handling the commands in its hands, which the new
// owner handles in order. Every command gets exactly one outcome, no event
// is lost, doubled or reordered.
func TestAggregatorFrozenWhileHoldingCommands(t *testing.T) {
	t.Parallel()
	cfg := chaosFromEnv(t, "JETSOURCE_CHAOS_FREEZE", 120, 2)
	s := newStack(t)
	for i := range 2 {
		s.run(fmt.Sprintf("aggregator-%d", i), "aggregator", fmt.Sprintf("AGGREGATOR_REPLICA_ID=agg-%d", i), "AGGREGATOR_LEASE_TTL=2s")
	}
	for _, p := range []string{"order_summary", "order_history", "sales_daily"} {
		s.run(p, "projector", "PROJECTOR_PROJECTION="+p)
	}
	ctx := context.Background()
	var leases jetstream.KeyValue
	eventually.Holds(t, time.Minute, "the aggregators' lease bucket", func() (bool, string) {
		var err error
		leases, err = s.js.KeyValue(ctx, es.LeaseBucket)
		return err == nil, fmt.Sprint(err)
	})
	cmds := workload.Waves(fmt.Sprintf("freeze%d", cfg.seed%100000), cfg.orders)
	start := time.Now()
	var (
		faults    []string
		takeovers []time.Duration
	)
	for k, part := range chunk(cmds, cfg.kills+1) {
		// A chunk to freeze in is spread over about a second (publish
		// pauses after every 50 commands): sent at once, it can be handled
		// between two polls of the probe below, which then finds nothing
		// in hand for good.
		var pace time.Duration
		if k < cfg.kills {
			pace = time.Second * 50 / time.Duration(max(len(part), 50))
		}
		published := make(chan error, 1)
		go func() { published <- s.publish(ctx, part, pace) }()
		if k < cfg.kills {
			victim, id := fmt.Sprintf("aggregator-%d", k%2), fmt.Sprintf("agg-%d", k%2)
			var held []int
			eventually.Holds(t, time.Minute, id+" to be frozen holding commands", func() (bool, string) {
				if held = s.holding(leases, id); len(held) == 0 {
					return false, "it holds none"
				}
				s.process(victim).freeze()
				if held = s.holding(leases, id); len(held) == 0 {
					s.process(victim).thaw()
					return false, "it finished them as it was frozen"
				}
				return true, ""
			})
			frozen := time.Now()
			eventually.Holds(t, time.Minute, "the other replica to take "+id+"'s partitions", func() (bool, string) {
				owners := s.leaseOwners(leases)
				for _, p := range held {
					if owners[p] == id || owners[p] == "" {
						return false, fmt.Sprintf("partition %d owned by %q", p, owners[p])
					}
				}
				return true, ""
			})
			takeovers = append(takeovers, time.Since(frozen).Round(10*time.Millisecond))
			s.process(victim).thaw()
			faults = append(faults, fmt.Sprintf("%s holding %d partitions' commands", victim, len(held)))
		}
		if err := <-published; err != nil {
			t.Fatal(err)
		}
	}
	results := s.results(cmds, 2*time.Minute)
	slices.Sort(takeovers)
	faultSummary{
		kind:      "aggregator frozen (SIGSTOP) while holding commands, thawed after the takeover",
		injection: "SIGSTOP, then SIGCONT of an aggregator process (lease TTL 2s)",
		fsync:     "one embedded server, R1",
		seed:      cfg.seed, orders: cfg.orders, faults: faults, v: s.checkOutcomes(cmds, results), took: time.Since(start),
		extra: fmt.Sprintf("takeover after SIGSTOP: %v; partitions a thawed replica stopped as its tenure was over: %d",
			takeovers, s.countLog("partition stopped: its lease was not renewed in time")),
	}.finish(t, s)
}

// leaseOwners maps each command partition to the replica holding its lease.
func (s *stack) leaseOwners(leases jetstream.KeyValue) map[int]string {
	s.t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	owners := map[int]string{}
	keys, err := leases.ListKeys(ctx)
	if err != nil {
		s.t.Fatal(err)
	}
	for key := range keys.Keys() {
		p, err := strconv.Atoi(strings.TrimPrefix(key, "partitions."))
		if err != nil {
			continue // a members.* key
		}
		e, err := leases.Get(ctx, key)
		if errors.Is(err, jetstream.ErrKeyNotFound) {
			continue
		}
		if err != nil {
			s.t.Fatal(err)
		}
		owners[p] = string(e.Value())
	}
	return owners
}

// holding lists the partitions whose lease replica holds and whose
// consumer has commands delivered and not acknowledged.
func (s *stack) holding(leases jetstream.KeyValue, replica string) []int {
	s.t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	stream, err := s.js.Stream(ctx, contract.CommandsStream)
	if err != nil {
		s.t.Fatal(err)
	}
	var held []int
	for p, owner := range s.leaseOwners(leases) {
		if owner != replica {
			continue
		}
		c, err := stream.Consumer(ctx, "aggregator-"+strconv.Itoa(p))
		if err != nil {
			continue // being recreated
		}
		if c.CachedInfo().NumAckPending > 0 {
			held = append(held, p)
		}
	}
	slices.Sort(held)
	return held
}
