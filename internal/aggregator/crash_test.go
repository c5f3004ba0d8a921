package aggregator_test

import (
	"context"
	"encoding/json"
	"fmt"
	"sync"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/jetsource/jetsource/contract"
	"github.com/jetsource/jetsource/internal/aggregator"
	"github.com/jetsource/jetsource/internal/es"
	"github.com/jetsource/jetsource/internal/natstest"
)

// TestCrashBetweenAppendAndAckDuplicatesNothing kills the aggregator's
// connection right after its events are stored, before the result is
// published and the command acknowledged, as a process crash would; a
// fresh aggregator then gets the command again.
func TestCrashBetweenAppendAndAckDuplicatesNothing(t *testing.T) {
	h := startHarness(t, aggregator.Config{})
	h.stop()
	orderID := newID("ord")
	create := cmd{ID: newID("cmd"), Type: "CreateOrder", OrderID: orderID, Data: map[string]any{"customerId": "c",
		"items": []map[string]any{{"productId": "a", "quantity": 1, "unitPriceCents": 5}, {"productId": "b", "quantity": 2, "unitPriceCents": 5}}}}

	nc, err := nats.Connect(h.nc.ConnectedUrl())
	if err != nil {
		t.Fatal(err)
	}
	js, _ := jetstream.New(nc)
	crashed := make(chan struct{})
	stopDoomed := h.runOn(js, aggregator.Config{}, func(point, commandID string) error {
		if point == "appended" && commandID == create.ID {
			nc.Close()
			close(crashed)
		}
		return nil
	})
	body, _ := json.Marshal(create)
	h.publish(contract.CommandSubject(orderID, create.Type), create.ID, body)
	select {
	case <-crashed:
	case <-time.After(10 * time.Second):
		t.Fatal("the command was never appended")
	}
	stopDoomed()
	if _, err := h.lookup(contract.ResultSubject(create.ID), 200*time.Millisecond); err == nil {
		t.Fatal("the crashed aggregator published a result")
	}
	stored := h.events(orderID)
	if len(stored) != 3 {
		t.Fatalf("%d events stored before the crash, want 3", len(stored))
	}

	h.stop = h.run(aggregator.Config{})
	r := accepted(t, h.waitResult(contract.ResultSubject(create.ID)))
	if r.Version != 3 || r.StreamSequence != stored[2].Sequence || fmt.Sprint(r.EventIDs) != fmt.Sprint([]string{stored[0].ID, stored[1].ID, stored[2].ID}) {
		t.Fatalf("result after restart %+v does not describe the stored events", r)
	}
	if after := h.events(orderID); len(after) != 3 {
		t.Fatalf("restart appended again: %d events", len(after))
	}
	h.waitSettled()
}

// TestPanickingCommandIsRejectedAndThePartitionGoesOn proves a poison
// command cannot block the commands behind it.
func TestPanickingCommandIsRejectedAndThePartitionGoesOn(t *testing.T) {
	h := startHarness(t, aggregator.Config{})
	h.stop()
	orderID := newID("ord")
	poison := newID("poison")
	h.stop = h.runOn(h.js, aggregator.Config{}, func(point, commandID string) error {
		if point == "decide" && commandID == poison {
			panic("boom")
		}
		return nil
	})
	accepted(t, h.send(cmd{ID: newID("cmd"), Type: "CreateOrder", OrderID: orderID, Data: map[string]any{"customerId": "c"}}))
	bad := h.send(cmd{ID: poison, Type: "AddItem", OrderID: orderID, Data: map[string]any{"productId": "a", "quantity": 1, "unitPriceCents": 1}})
	rejectedWith(t, bad, contract.CodeInternal)
	r := accepted(t, h.send(cmd{ID: newID("cmd"), Type: "AddItem", OrderID: orderID, Data: map[string]any{"productId": "b", "quantity": 1, "unitPriceCents": 1}}))
	if r.Version != 2 {
		t.Fatalf("command after the poison at version %d", r.Version)
	}
}

// TestLostAppendAcknowledgementIsVerifiedNotRetriedBlindly stores a
// command's events but reports the append's outcome as unknown, as a lost
// acknowledgement would: the aggregator must find its own events and not
// append them again.
func TestLostAppendAcknowledgementIsVerifiedNotRetriedBlindly(t *testing.T) {
	h := startHarness(t, aggregator.Config{})
	h.stop()
	orderID := newID("ord")
	lost := map[string]bool{}
	count := &counter{}
	h.stop = h.runOn(h.js, aggregator.Config{Observer: count}, func(point, commandID string) error {
		if point == "appended" && !lost[commandID] {
			lost[commandID] = true
			return fmt.Errorf("publish ack: %w", es.ErrUnknownOutcome)
		}
		return nil
	})
	create := accepted(t, h.send(cmd{ID: newID("cmd"), Type: "CreateOrder", OrderID: orderID, Data: map[string]any{"customerId": "c"}}))
	add := accepted(t, h.send(cmd{ID: newID("cmd"), Type: "AddItem", OrderID: orderID, Data: map[string]any{"productId": "a", "quantity": 1, "unitPriceCents": 1}}))
	events := h.events(orderID)
	if len(events) != 2 || create.Version != 1 || add.Version != 2 || add.EventIDs[0] != events[1].ID {
		t.Fatalf("after lost acknowledgements: %d events, results %+v %+v", len(events), create, add)
	}
	// One append per command: the reload found the events, no blind retry
	// was sent (it would have failed its expected sequence, and counted).
	if n := count.appends.Load(); n != 2 {
		t.Fatalf("%d appends for 2 commands", n)
	}
}

// TestLostLeaseDoesNotRunAPartitionTwice makes a partition's lease renewal
// fail while its worker is stuck inside a command: the replica must not
// start the partition again until that worker has finished, or two workers
// would decide the partition's commands out of order.
func TestLostLeaseDoesNotRunAPartitionTwice(t *testing.T) {
	h := startHarness(t, aggregator.Config{})
	h.stop()
	orderID := newID("ord")
	submit := newID("submit")
	stuck, release := make(chan struct{}), make(chan struct{})
	var once sync.Once
	h.stop = h.runOn(h.js, aggregator.Config{ReplicaID: "solo", LeaseTTL: 2 * time.Second}, func(point, commandID string) error {
		if point == "decide" && commandID == submit {
			once.Do(func() { close(stuck) })
			<-release
		}
		return nil
	})
	accepted(t, h.send(cmd{ID: newID("cmd"), Type: "CreateOrder", OrderID: orderID, Data: map[string]any{"customerId": "c"}}))
	submitBody, _ := json.Marshal(cmd{ID: submit, Type: "SubmitOrder", OrderID: orderID})
	h.publish(contract.CommandSubject(orderID, "SubmitOrder"), submit, submitBody)
	add := newID("cmd")
	addBody, _ := json.Marshal(cmd{ID: add, Type: "AddItem", OrderID: orderID, Data: map[string]any{"productId": "a", "quantity": 1, "unitPriceCents": 5}})
	h.publish(contract.CommandSubject(orderID, "AddItem"), add, addBody)

	<-stuck
	// Another write to the lease key makes this replica's next renewal
	// fail its compare-and-set, as a timed-out renewal would.
	kv, err := h.js.KeyValue(context.Background(), es.LeaseBucket)
	if err != nil {
		t.Fatal(err)
	}
	key := fmt.Sprintf("partitions.%d", contract.Partition(orderID, natstest.Partitions))
	if _, err := kv.Put(context.Background(), key, []byte("solo")); err != nil {
		t.Fatal(err)
	}
	// The worker stays stuck for three rounds of the coordinator (each
	// heartbeats the member key): one fails the renewal, the next would
	// start the partition again if it did not wait for the stuck worker.
	waitMemberBeats(t, kv, "solo", 3)
	close(release)

	rejectedWith(t, h.waitResult(contract.ResultSubject(submit)), contract.CodeInvalidState)
	if r := accepted(t, h.waitResult(contract.ResultSubject(add))); r.Version != 2 {
		t.Fatalf("AddItem at version %d", r.Version)
	}
	// A later command of the order is handled after everything before it
	// in the partition: once it is, no second worker can still decide the
	// SubmitOrder ahead of it.
	marker := newID("cmd")
	if r := accepted(t, h.send(cmd{ID: marker, Type: "AddItem", OrderID: orderID, Data: map[string]any{"productId": "b", "quantity": 1, "unitPriceCents": 5}})); r.Version != 3 {
		t.Fatalf("the marker AddItem at version %d", r.Version)
	}
	events := h.events(orderID)
	if len(events) != 3 || events[1].Type != "ItemAdded" || events[2].Type != "ItemAdded" {
		t.Fatalf("events %v: the SubmitOrder decided before the AddItem was applied after it", eventTypes(events))
	}
	rejectedWith(t, h.waitResult(contract.ResultSubject(submit)), contract.CodeInvalidState)
}

// waitMemberBeats waits until replica has written its member key n more
// times: n rounds of its coordinator.
func waitMemberBeats(t *testing.T, kv jetstream.KeyValue, replica string, n int) {
	t.Helper()
	w, err := kv.Watch(context.Background(), "members."+replica, jetstream.UpdatesOnly())
	if err != nil {
		t.Fatal(err)
	}
	defer func() { _ = w.Stop() }()
	timeout := time.After(30 * time.Second)
	for seen := 0; seen < n; {
		select {
		case e := <-w.Updates():
			if e != nil {
				seen++
			}
		case <-timeout:
			t.Fatalf("replica %s wrote its member key %d of %d times", replica, seen, n)
		}
	}
}

func eventTypes(events []contract.Event) []string {
	out := make([]string, len(events))
	for i, e := range events {
		out[i] = e.Type
	}
	return out
}
