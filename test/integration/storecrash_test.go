package integration

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"math/rand/v2"
	"sync"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"github.com/synadia-io/orbit.go/jetstreamext"

	"github.com/jetsource/jetsource/contract"
	"github.com/jetsource/jetsource/internal/es"
	"github.com/jetsource/jetsource/internal/workload"
)

// TestNATSNodeKills runs the whole service over a three-node cluster of
// nats-server processes (R3 streams, sync_interval: always) and kills the
// events stream's leader and random nodes with SIGKILL, again and again,
// restarting each on its data while commands flow. After every restart it
// checks what is stored so far; at the end, every command's outcome, every
// order's events and the read models.
func TestNATSNodeKills(t *testing.T) {
	runNATSFaults(t, chaosFromEnv(t, "JETSOURCE_CHAOS_NATS", 60, 4), natsFaultRun{
		kind: "NATS node killed (SIGKILL), restarted on its data",
		fault: func(f *natsFaults, k int) string {
			leader := f.cluster.index(streamLeader(t, f.s.js, contract.EventsStream))
			victim := f.rng.IntN(3)
			if k%2 == 0 {
				victim = leader
			}
			f.cluster.kill(victim)
			f.pause(1500)
			f.cluster.start(victim)
			if victim == leader {
				return f.cluster.nodes[victim].name + " (events leader)"
			}
			return f.cluster.nodes[victim].name
		},
	})
}

// TestNATSNodeDiskReplaced kills a node with SIGKILL and starts it again
// on an empty store, as after a disk replacement, while commands flow: it
// must catch up from the others without losing or doubling anything. The
// last replaced node is then made the events stream's leader, so that the
// final checks, which read from the leader, read its copy.
func TestNATSNodeDiskReplaced(t *testing.T) {
	var last int
	runNATSFaults(t, chaosFromEnv(t, "JETSOURCE_CHAOS_DISK", 60, 1), natsFaultRun{
		kind: "NATS node killed (SIGKILL), restarted on an empty store (disk replaced)",
		fault: func(f *natsFaults, k int) string {
			last = f.rng.IntN(3)
			f.cluster.kill(last)
			f.cluster.replaceDisk(last)
			f.pause(1500)
			f.cluster.start(last)
			return f.cluster.nodes[last].name
		},
		settle: func(f *natsFaults) { f.cluster.makeLeader(f.s.nc, contract.EventsStream, last) },
	})
}

// natsFaultRun is one kind of NATS fault.
type natsFaultRun struct {
	kind string
	// fault injects the k-th fault into a healthy cluster and returns the
	// node it hit; it returns once the node runs again.
	fault func(f *natsFaults, k int) string
	// settle, if set, runs after the last fault, before the final checks.
	settle func(f *natsFaults)
}

// natsFaults is the state of a NATS fault run that a fault function uses.
type natsFaults struct {
	rng     *rand.Rand
	cluster *natsCluster
	s       *stack
}

// pause waits a random time up to maxMillis: the faults land at seeded,
// varied points of the load.
func (f *natsFaults) pause(maxMillis int) {
	time.Sleep(time.Duration(f.rng.IntN(maxMillis)) * time.Millisecond) // the fault schedule
}

// runNATSFaults runs two aggregators and three projectors over a NATS
// cluster, publishes cfg.orders orders' commands, injects cfg.kills faults
// while they flow, checks the stored events after every fault and
// everything at the end, and logs a summary.
func runNATSFaults(t *testing.T, cfg chaosSettings, run natsFaultRun) {
	cluster := startNATSCluster(t)
	s := newClusterStack(t, cluster)
	f := &natsFaults{rng: rand.New(rand.NewPCG(cfg.seed, 2)), cluster: cluster, s: s}
	for i := range 2 {
		s.run(fmt.Sprintf("aggregator-%d", i), "aggregator", fmt.Sprintf("AGGREGATOR_REPLICA_ID=agg-%d", i), "AGGREGATOR_LEASE_TTL=2s")
	}
	for _, p := range []string{"order_summary", "order_history", "sales_daily"} {
		s.run(p, "projector", "PROJECTOR_PROJECTION="+p, "PROJECTOR_BATCH_SIZE=50")
	}
	seen := s.watchResults()
	cmds := workload.Waves(fmt.Sprintf("nats%d", cfg.seed%100000), cfg.orders)
	// The commands go out in one chunk per fault, and the fault lands while
	// its chunk is being published; a chunk starts once the one before is
	// stored, so each order's commands keep their order.
	start := time.Now()
	var hits []string
	for k, part := range chunk(cmds, cfg.kills+1) {
		cluster.waitHealthy(s.js, 2*time.Minute)
		published := make(chan error, 1)
		go func() { published <- s.publish(context.Background(), part, 50*time.Millisecond) }()
		if k < cfg.kills {
			f.pause(800)
			hits = append(hits, run.fault(f, k))
		}
		if err := <-published; err != nil {
			t.Fatal(err)
		}
		if k < cfg.kills {
			cluster.waitHealthy(s.js, 2*time.Minute)
			s.checkStored(seen.accepted())
		}
	}
	results := s.results(cmds, 3*time.Minute)
	cluster.waitHealthy(s.js, 2*time.Minute)
	if run.settle != nil {
		run.settle(f)
	}
	faultSummary{kind: run.kind, injection: "SIGKILL of a nats-server process", fsync: "sync_interval: always, R3 streams",
		seed: cfg.seed, orders: cfg.orders, faults: hits, v: s.checkOutcomes(cmds, results), took: time.Since(start)}.finish(t, s)
}

// resultLog collects the results the aggregators publish, as a core NATS
// subscriber sees them: a sample (a reconnect may miss some) against which
// the stored events are checked while faults go on.
type resultLog struct {
	mu      sync.Mutex
	results map[string]contract.Result
}

func (s *stack) watchResults() *resultLog {
	s.t.Helper()
	l := &resultLog{results: map[string]contract.Result{}}
	sub, err := s.nc.Subscribe(contract.ResultsPrefix+">", func(m *nats.Msg) {
		var r contract.Result
		if json.Unmarshal(m.Data, &r) == nil && r.Status == contract.StatusAccepted {
			l.mu.Lock()
			l.results[r.CommandID] = r
			l.mu.Unlock()
		}
	})
	if err != nil {
		s.t.Fatal(err)
	}
	s.t.Cleanup(func() { _ = sub.Unsubscribe() })
	return l
}

func (l *resultLog) accepted() []contract.Result {
	l.mu.Lock()
	defer l.mu.Unlock()
	out := make([]contract.Result, 0, len(l.results))
	for _, r := range l.results {
		out = append(out, r)
	}
	return out
}

// checkStored reads every stored event and asserts that each order's
// versions run 1..n in stream order, that no command's event is stored
// twice, and that each accepted result's event is stored at the sequence
// its result names. Events are read with batch direct gets, which a
// replica may answer a little behind the leader: a result's event that is
// not there is looked up on the leader before it counts as lost.
func (s *stack) checkStored(accepted []contract.Result) {
	s.t.Helper()
	ctx := context.Background()
	stored := map[uint64]contract.Event{}
	versions := map[string]int64{}
	causes := map[string]bool{}
	for next := uint64(1); ; {
		var msgs []*jetstream.RawStreamMsg
		retry(s.t, time.Minute, "read events from "+fmt.Sprint(next), func() error {
			it, err := jetstreamext.GetBatch(ctx, s.js, contract.EventsStream, 1000, jetstreamext.GetBatchSeq(next))
			if err != nil {
				return err
			}
			msgs = msgs[:0]
			for m, err := range it {
				if errors.Is(err, jetstreamext.ErrNoMessages) {
					break
				}
				if err != nil {
					return err
				}
				msgs = append(msgs, m)
			}
			return nil
		})
		if len(msgs) == 0 {
			break
		}
		for _, m := range msgs {
			e, err := contract.DecodeEvent(m.Subject, m.Sequence, m.Data)
			if err != nil {
				s.t.Fatalf("event at %d: %v", m.Sequence, err)
			}
			stored[m.Sequence] = e
			if versions[e.AggregateID]+1 != e.Version {
				s.t.Errorf("order %s: version %d stored at %d after version %d (lost, doubled or reordered)",
					e.AggregateID, e.Version, m.Sequence, versions[e.AggregateID])
			}
			versions[e.AggregateID] = e.Version
			if causes[e.Metadata.CausationID] {
				s.t.Errorf("command %s: a second event stored at %d", e.Metadata.CausationID, m.Sequence)
			}
			causes[e.Metadata.CausationID] = true
			next = m.Sequence + 1
		}
	}
	for _, r := range accepted {
		if e, ok := stored[r.StreamSequence]; ok && e.ID == r.EventIDs[0] {
			continue
		}
		e, found := s.leaderEvent(r.StreamSequence)
		if !found || e.ID != r.EventIDs[0] {
			s.t.Errorf("command %s was accepted with event %s at %d; the leader has %+v there (found %v): an acknowledged event was lost",
				r.CommandID, r.EventIDs[0], r.StreamSequence, e, found)
		}
	}
	if s.t.Failed() {
		s.t.FailNow()
	}
}

// leaderEvent reads the event at seq from the events stream's leader.
func (s *stack) leaderEvent(seq uint64) (contract.Event, bool) {
	s.t.Helper()
	var (
		e     contract.Event
		found bool
	)
	retry(s.t, time.Minute, fmt.Sprintf("read event %d from the leader", seq), func() error {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		m, err := es.LeaderMsg(ctx, s.js, contract.EventsStream, seq)
		if errors.Is(err, jetstream.ErrMsgNotFound) {
			found = false
			return nil
		}
		if err != nil {
			return err
		}
		e, err = contract.DecodeEvent(m.Subject, m.Sequence, m.Data)
		found = err == nil
		return err
	})
	return e, found
}
