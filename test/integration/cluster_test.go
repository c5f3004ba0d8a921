package integration

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/jetsource/jetsource/contract"
	"github.com/jetsource/jetsource/internal/aggregatord"
	"github.com/jetsource/jetsource/internal/es"
	"github.com/jetsource/jetsource/internal/eventually"
	"github.com/jetsource/jetsource/internal/natstest"
	"github.com/jetsource/jetsource/internal/workload"
)

// TestClusterLeaderFailover runs conditional appends and commands against a
// 3-node cluster with R3 streams and kills the event stream's leader in the
// middle, for good: no acknowledged event may be lost, none stored twice,
// and every command gets exactly its one outcome, with its event at the
// sequence its result names, in publish order.
func TestClusterLeaderFailover(t *testing.T) {
	if testing.Short() {
		t.Skip("cluster failover takes seconds")
	}
	cluster := startNATSCluster(t)
	connect := func() (*nats.Conn, jetstream.JetStream) {
		nc, err := nats.Connect(cluster.url(), nats.MaxReconnects(-1), nats.ReconnectWait(100*time.Millisecond))
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(nc.Close)
		js, _ := jetstream.New(nc)
		return nc, js
	}
	_, js := connect()
	ctx := context.Background()
	topology := natstest.Topology(natstest.Partitions)
	topology.Replicas, topology.LeaseTTL = 3, 3*time.Second
	retry(t, 30*time.Second, "create R3 streams", func() error {
		op, cancel := context.WithTimeout(ctx, 5*time.Second)
		defer cancel()
		return es.Setup(op, js, topology)
	})

	// The aggregator, with its own connection; its log is shown when a
	// command's outcome is wrong.
	aggLog := &lockedBuffer{}
	acfg := aggregatord.DefaultConfig()
	acfg.NATS.URL, acfg.MetricsAddr, acfg.Streams = cluster.url(), "", topology
	acfg.Aggregator.LeaseTTL = topology.LeaseTTL
	agg, err := aggregatord.NewMain(acfg, slog.New(slog.NewJSONHandler(aggLog, &slog.HandlerOptions{Level: slog.LevelDebug})))
	if err != nil {
		t.Fatal(err)
	}
	defer agg.Close()
	if err := agg.Run(ctx); err != nil {
		t.Fatal(err)
	}

	// Raw conditional appends to 8 orders, recording what was acknowledged.
	store := es.NewStore(js, natstest.Partitions)
	var mu sync.Mutex
	acked := map[string][]string{} // order → acknowledged event ids in order
	appendsDone := make(chan struct{})
	killAt := make(chan struct{})
	go func() {
		defer close(appendsDone)
		var wg sync.WaitGroup
		for o := range 8 {
			wg.Go(func() {
				id := fmt.Sprintf("raw-%d", o)
				for v := int64(1); v <= 60; v++ {
					if v == 20 && o == 0 {
						close(killAt)
					}
					appendOne(t, store, id, v, func(eventID string) {
						mu.Lock()
						acked[id] = append(acked[id], eventID)
						mu.Unlock()
					})
				}
			})
		}
		wg.Wait()
	}()

	// Commands through the aggregator, published with retries: Nats-Msg-Id
	// makes a retried publish safe.
	const orders = 60
	cmds := workload.Waves("cluster", orders)
	published := make(chan struct{})
	go func() {
		defer close(published)
		for _, c := range cmds {
			retry(t, 30*time.Second, "publish "+c.ID, func() error {
				op, cancel := context.WithTimeout(ctx, 2*time.Second)
				defer cancel()
				_, err := js.PublishMsg(op, c.Msg())
				return err
			})
		}
	}()

	<-killAt
	start := time.Now()
	leader := streamLeader(t, js, contract.EventsStream)
	t.Logf("killing %s, leader of %s", leader, contract.EventsStream)
	cluster.kill(cluster.index(leader))
	<-appendsDone
	<-published

	// Every acknowledged raw append is there, once, in order.
	rawAcked := 0
	for id, ids := range acked {
		var events []contract.Event
		retry(t, 30*time.Second, "read "+id+" from the leader", func() error {
			var err error
			events, err = store.ReadFromLeader(ctx, id, 0)
			return err
		})
		seen := map[string]bool{}
		for i, e := range events {
			if e.Version != int64(i+1) || seen[e.ID] {
				t.Fatalf("%s: event %d (%s) has version %d or is stored twice", id, i, e.ID, e.Version)
			}
			seen[e.ID] = true
		}
		for _, eid := range ids {
			if !seen[eid] {
				t.Fatalf("%s: acknowledged event %s was lost", id, eid)
			}
		}
		rawAcked += len(ids)
	}
	// Every command has one outcome matching the events.
	resultsStream, err := js.Stream(ctx, contract.ResultsStream)
	if err != nil {
		t.Fatal(err)
	}
	results := make(map[string]contract.Result, len(cmds))
	for _, c := range cmds {
		var r contract.Result
		retry(t, 60*time.Second, "result of "+c.ID, func() error {
			m, err := resultsStream.GetLastMsgForSubject(ctx, contract.ResultSubject(c.ID))
			if err != nil {
				return err
			}
			return json.Unmarshal(m.Data, &r)
		})
		results[c.ID] = r
		if (r.Status == contract.StatusAccepted) != c.WantAccepted {
			events, _ := store.ReadFromLeader(ctx, c.OrderID, 0)
			for _, e := range events {
				t.Logf("  %s v%d seq %d %s caused by %s", e.AggregateID, e.Version, e.Sequence, e.Type, e.Metadata.CausationID)
			}
			p := fmt.Sprintf(`"partition":%d`, contract.Partition(c.OrderID, natstest.Partitions))
			for _, line := range strings.Split(aggLog.String(), "\n") {
				if strings.Contains(line, c.OrderID) || strings.Contains(line, p+",") || strings.Contains(line, p+"}") {
					t.Log(line)
				}
			}
		}
	}
	// checkOutcomes needs only the test and JetStream of a stack.
	checked := &stack{t: t, js: js}
	faultSummary{kind: "events stream leader killed (SIGKILL), never restarted",
		injection: "SIGKILL of the ORDERS_EVENTS leader's nats-server process", fsync: "sync_interval: always, R3 streams",
		orders: orders, faults: []string{leader + " (events leader)"}, v: checked.checkOutcomes(cmds, results), took: time.Since(start),
		extra: fmt.Sprintf("no projectors in this test; raw conditional appends: %d acknowledged over %d orders, each stored once, in order; partitions restarted over a lost delivery: %d",
			rawAcked, len(acked), strings.Count(aggLog.String(), "commands delivered out of order"))}.report(t)
}

// appendOne appends version v of order id, retrying through the failover:
// after an error of unknown outcome it reloads from the leader and accepts
// its own event if it is there.
func appendOne(t *testing.T, store *es.Store, id string, v int64, ok func(eventID string)) {
	ctx := context.Background()
	e := contract.Event{ID: es.NewEventID(time.Now()), AggregateType: "order", AggregateID: id, Type: "ItemAdded", SchemaVersion: 1, Version: v,
		Data: json.RawMessage(`{}`), Metadata: contract.EventMetadata{Timestamp: contract.Time{Time: time.Now()}}}
	deadline := time.Now().Add(60 * time.Second)
	for time.Now().Before(deadline) {
		op, cancel := context.WithTimeout(ctx, 2*time.Second)
		events, err := store.ReadFromLeader(op, id, 0)
		cancel()
		if err != nil {
			time.Sleep(100 * time.Millisecond) // a client's retry pause while the cluster elects a leader
			continue
		}
		for _, stored := range events {
			if stored.ID == e.ID {
				ok(e.ID)
				return
			}
		}
		if int64(len(events)) != v-1 {
			t.Errorf("%s: %d events before appending version %d", id, len(events), v)
			return
		}
		var last uint64
		if len(events) > 0 {
			last = events[len(events)-1].Sequence
		}
		op, cancel = context.WithTimeout(ctx, 2*time.Second)
		_, err = store.Append(op, id, last, []contract.Event{e})
		cancel()
		if err == nil {
			ok(e.ID)
			return
		}
		if !errors.Is(err, es.ErrUnknownOutcome) && !errors.Is(err, es.ErrConflict) {
			time.Sleep(100 * time.Millisecond) // a client's retry pause, as above
		}
	}
	t.Errorf("%s: version %d not appended within a minute", id, v)
}

func streamLeader(t *testing.T, js jetstream.JetStream, name string) string {
	t.Helper()
	var leader string
	retry(t, 10*time.Second, "find the leader of "+name, func() error {
		s, err := js.Stream(context.Background(), name)
		if err != nil {
			return err
		}
		info, err := s.Info(context.Background())
		if err != nil {
			return err
		}
		if info.Cluster == nil || info.Cluster.Leader == "" {
			return errors.New("no leader yet")
		}
		leader = info.Cluster.Leader
		return nil
	})
	return leader
}

// retry calls fn until it succeeds.
func retry(t *testing.T, within time.Duration, what string, fn func() error) {
	t.Helper()
	eventually.Holds(t, within, what, func() (bool, string) {
		err := fn()
		return err == nil, fmt.Sprint(err)
	})
}
