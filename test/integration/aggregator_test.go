package integration

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"math/rand/v2"
	"testing"
	"time"

	"github.com/nats-io/nats.go/jetstream"

	"github.com/jetsource/jetsource/contract"
	"github.com/jetsource/jetsource/internal/es"
	"github.com/jetsource/jetsource/internal/eventually"
	"github.com/jetsource/jetsource/internal/natstest"
	"github.com/jetsource/jetsource/internal/workload"
)

// TestAggregatorKilledUnderLoadLosesAndDuplicatesNothing runs the
// aggregator binary, kills it with SIGKILL at random points while commands
// stream in, restarts it, and checks every command got exactly its one
// outcome and every order's history is exact.
func TestAggregatorKilledUnderLoadLosesAndDuplicatesNothing(t *testing.T) {
	t.Parallel()
	const orders, kills = 150, 4
	seed := uint64(time.Now().UnixNano())
	t.Logf("seed %d", seed)
	rng := rand.New(rand.NewPCG(seed, 7))

	srv, _, js := natstest.Streams(t, natstest.Partitions)
	env := []string{"NATS_URL=" + srv.ClientURL(), "LOG_LEVEL=warn", "AGGREGATOR_SNAPSHOT_EVERY=3", "AGGREGATOR_REPLICA_ID=agg-1", "METRICS_ADDR=127.0.0.1:0"}
	agg := start(t, "aggregator", env...)

	cmds := workload.Waves("kill", orders)
	ctx := context.Background()
	// Publish at a steady pace while the kills happen, so they hit the
	// aggregator in the middle of its work.
	published := make(chan error, 1)
	go func() {
		for i, c := range cmds {
			if _, err := js.PublishMsgAsync(c.Msg()); err != nil {
				published <- err
				return
			}
			if i%20 == 0 {
				time.Sleep(10 * time.Millisecond) // the pace, not a synchronisation
			}
		}
		<-js.PublishAsyncComplete()
		published <- nil
	}()

	results, err := js.Stream(ctx, contract.ResultsStream)
	if err != nil {
		t.Fatal(err)
	}
	resultOf := func(id string) (contract.Result, bool) {
		m, err := results.GetLastMsgForSubject(ctx, contract.ResultSubject(id))
		if errors.Is(err, jetstream.ErrMsgNotFound) {
			return contract.Result{}, false
		}
		if err != nil {
			t.Fatal(err)
		}
		var r contract.Result
		if err := json.Unmarshal(m.Data, &r); err != nil {
			t.Fatal(err)
		}
		return r, true
	}
	for k := range kills {
		// The kill schedule: a random moment of the aggregator's work.
		time.Sleep(time.Duration(50+rng.IntN(150)) * time.Millisecond)
		agg.kill()
		info, err := results.Info(ctx)
		if err != nil {
			t.Fatal(err)
		}
		t.Logf("kill %d with %d of %d results stored", k+1, info.State.Msgs, len(cmds))
		agg = start(t, "aggregator", env...)
	}
	if err := <-published; err != nil {
		t.Fatal(err)
	}

	outcome := map[string]contract.Result{}
	eventually.Holds(t, 60*time.Second, "a result for every command", func() (bool, string) {
		for _, c := range cmds {
			if _, done := outcome[c.ID]; done {
				continue
			}
			r, ok := resultOf(c.ID)
			if !ok {
				return false, "no result for " + c.ID
			}
			outcome[c.ID] = r
		}
		return true, ""
	})
	agg.terminate(15 * time.Second)

	store := es.NewStore(js, natstest.Partitions)
	acceptedPerOrder := map[string]int{}
	for _, c := range cmds {
		r := outcome[c.ID]
		if (r.Status == contract.StatusAccepted) != c.WantAccepted {
			t.Fatalf("command %s (%s) has outcome %+v, want accepted=%v", c.ID, c.Type, r, c.WantAccepted)
		}
		if r.Status == contract.StatusAccepted {
			acceptedPerOrder[c.OrderID]++
		}
	}
	for i := range orders {
		id := fmt.Sprintf("kill-ord-%d", i)
		events, err := store.Read(ctx, id, 0)
		if err != nil {
			t.Fatal(err)
		}
		causes := map[string]bool{}
		for v, e := range events {
			if e.Version != int64(v+1) {
				t.Fatalf("order %s: event %d has version %d", id, v, e.Version)
			}
			if causes[e.Metadata.CausationID] {
				t.Fatalf("order %s: command %s stored twice", id, e.Metadata.CausationID)
			}
			causes[e.Metadata.CausationID] = true
			if r := outcome[e.Metadata.CausationID]; r.Status != contract.StatusAccepted || r.Version != e.Version || r.EventIDs[0] != e.ID {
				t.Fatalf("order %s: event %s does not match its command's result %+v", id, e.ID, r)
			}
		}
		if len(events) != acceptedPerOrder[id] {
			t.Fatalf("order %s has %d events for %d accepted commands", id, len(events), acceptedPerOrder[id])
		}
	}
}
