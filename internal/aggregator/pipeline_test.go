package aggregator_test

import (
	"context"
	"encoding/json"
	"fmt"
	"sync"
	"testing"
	"time"

	"github.com/jetsource/jetsource/contract"
	"github.com/jetsource/jetsource/internal/aggregator"
	"github.com/jetsource/jetsource/internal/eventually"
	"github.com/jetsource/jetsource/internal/natstest"
	"github.com/jetsource/jetsource/internal/order"
)

// ordersOfOnePartition returns n new order ids in one command partition.
func ordersOfOnePartition(n int) []string {
	first := newID("ord")
	ids := []string{first}
	for len(ids) < n {
		if id := newID("ord"); contract.Partition(id, natstest.Partitions) == contract.Partition(first, natstest.Partitions) {
			ids = append(ids, id)
		}
	}
	return ids
}

// gate blocks the handling of one command at "decide", the first time only,
// until it is opened.
type gate struct {
	commandID string
	once      sync.Once
	reached   chan struct{}
	open      chan struct{}
}

func newGate(commandID string) *gate {
	return &gate{commandID: commandID, reached: make(chan struct{}), open: make(chan struct{})}
}

func (g *gate) hook(point, commandID string) error {
	if point == "decide" && commandID == g.commandID {
		g.once.Do(func() {
			close(g.reached)
			<-g.open
		})
	}
	return nil
}

func (h *harness) publishCmd(c cmd) {
	h.t.Helper()
	body, err := json.Marshal(c)
	if err != nil {
		h.t.Fatal(err)
	}
	h.publish(contract.CommandSubject(c.OrderID, c.Type), c.ID, body)
}

func addItem(orderID, product string) cmd {
	return cmd{ID: newID("cmd"), Type: "AddItem", OrderID: orderID, Data: map[string]any{"productId": product, "quantity": 1, "unitPriceCents": 1}}
}

// products lists the products of an order's ItemAdded events, in order.
func (h *harness) products(orderID string) []string {
	h.t.Helper()
	var out []string
	for _, e := range h.events(orderID) {
		if e.Type != "ItemAdded" {
			continue
		}
		var d order.ItemAdded
		if err := json.Unmarshal(e.Data, &d); err != nil {
			h.t.Fatal(err)
		}
		out = append(out, d.ProductID)
	}
	return out
}

func TestOrdersOfOnePartitionGoOnWhileOneWaits(t *testing.T) {
	h := startHarness(t, aggregator.Config{})
	h.stop()
	ids := ordersOfOnePartition(2)
	waiting, other := ids[0], ids[1]
	create := cmd{ID: newID("cmd"), Type: "CreateOrder", OrderID: waiting, Data: map[string]any{"customerId": "c"}}
	g := newGate(create.ID)
	defer close(g.open)
	h.stop = h.runOn(h.js, aggregator.Config{}, g.hook)

	h.publishCmd(create)
	add := addItem(waiting, "a")
	h.publishCmd(add)
	<-g.reached
	// The other order of the partition is handled while the first waits.
	accepted(t, h.send(cmd{ID: newID("cmd"), Type: "CreateOrder", OrderID: other, Data: map[string]any{"customerId": "c"}}))
	accepted(t, h.send(addItem(other, "b")))
	// The waiting order's next command stays behind its first.
	if r, err := h.lookup(contract.ResultSubject(add.ID), 50*time.Millisecond); err == nil {
		t.Fatalf("a command overtook the waiting command of its order: %+v", r)
	}
	g.open <- struct{}{}
	if r := accepted(t, h.waitResult(contract.ResultSubject(add.ID))); r.Version != 2 {
		t.Fatalf("AddItem at version %d, want 2", r.Version)
	}
	accepted(t, h.waitResult(contract.ResultSubject(create.ID)))
}

func TestInterleavedOrdersOfOnePartitionKeepTheirOwnOrder(t *testing.T) {
	h := startHarness(t, aggregator.Config{MaxInFlight: 16})
	ids := ordersOfOnePartition(8)
	for _, id := range ids {
		h.publishCmd(cmd{ID: newID("cmd"), Type: "CreateOrder", OrderID: id, Data: map[string]any{"customerId": "c"}})
	}
	const n = 30
	var last []string
	for i := range n {
		last = last[:0]
		for _, id := range ids {
			c := addItem(id, fmt.Sprintf("p-%02d", i))
			h.publishCmd(c)
			last = append(last, c.ID)
		}
	}
	for _, id := range last {
		if r := accepted(t, h.waitResult(contract.ResultSubject(id))); r.Version != n+1 {
			t.Fatalf("last command at version %d, want %d", r.Version, n+1)
		}
	}
	for _, id := range ids {
		for i, p := range h.products(id) {
			if want := fmt.Sprintf("p-%02d", i); p != want {
				t.Fatalf("order %s: item %d is %s, want %s: commands applied out of order", id, i, p, want)
			}
		}
	}
}

// TestCommandRedeliveredWhileHandledIsNotOvertaken holds a command past
// its ack wait, so JetStream delivers it again while it is being handled:
// the partition must restart its consumer only after the handler is done,
// and neither the command nor the ones behind it may run twice or out of
// order.
func TestCommandRedeliveredWhileHandledIsNotOvertaken(t *testing.T) {
	h := startHarness(t, aggregator.Config{})
	id := newID("ord")
	accepted(t, h.send(cmd{ID: newID("cmd"), Type: "CreateOrder", OrderID: id, Data: map[string]any{"customerId": "c"}}))
	h.stop()
	cmds := []cmd{addItem(id, "p-0"), addItem(id, "p-1"), addItem(id, "p-2")}
	g := newGate(cmds[0].ID)
	defer close(g.open)
	h.stop = h.runOn(h.js, aggregator.Config{AckWait: time.Second}, g.hook)
	for _, c := range cmds {
		h.publishCmd(c)
	}
	<-g.reached
	cons, err := h.js.Consumer(context.Background(), contract.CommandsStream, fmt.Sprintf("aggregator-%d", contract.Partition(id, natstest.Partitions)))
	if err != nil {
		t.Fatal(err)
	}
	eventually.True(t, 10*time.Second, "JetStream redelivers the held command", func() bool {
		info, err := cons.Info(context.Background())
		return err == nil && info.NumRedelivered > 0
	})
	g.open <- struct{}{}
	for i, c := range cmds {
		if r := accepted(t, h.waitResult(contract.ResultSubject(c.ID))); r.Version != int64(i+2) {
			t.Fatalf("%s at version %d, want %d", c.ID, r.Version, i+2)
		}
	}
	if got := fmt.Sprint(h.products(id)); got != "[p-0 p-1 p-2]" {
		t.Fatalf("items %s, want [p-0 p-1 p-2] once each", got)
	}
}

// TestCommandsHandledBehindAHeldOneAreSettled holds one order's command
// while commands of another order behind it in the partition are handled:
// the purge cannot pass the held command, so the handled ones are acked
// before their ack wait runs out, and only the held command stays pending.
func TestCommandsHandledBehindAHeldOneAreSettled(t *testing.T) {
	h := startHarness(t, aggregator.Config{})
	ids := ordersOfOnePartition(2)
	for _, id := range ids {
		accepted(t, h.send(cmd{ID: newID("cmd"), Type: "CreateOrder", OrderID: id, Data: map[string]any{"customerId": "c"}}))
	}
	h.stop()
	held := addItem(ids[0], "p-0")
	behind := []cmd{addItem(ids[1], "p-0"), addItem(ids[1], "p-1"), addItem(ids[1], "p-2")}
	g := newGate(held.ID)
	defer close(g.open)
	h.stop = h.runOn(h.js, aggregator.Config{AckWait: 3 * time.Second}, g.hook)
	h.publishCmd(held)
	<-g.reached
	for _, c := range behind {
		h.publishCmd(c)
	}
	for _, c := range behind {
		accepted(t, h.waitResult(contract.ResultSubject(c.ID)))
	}
	cons, err := h.js.Consumer(context.Background(), contract.CommandsStream, fmt.Sprintf("aggregator-%d", contract.Partition(ids[0], natstest.Partitions)))
	if err != nil {
		t.Fatal(err)
	}
	eventually.Holds(t, 10*time.Second, "only the held command pending", func() (bool, string) {
		info, err := cons.Info(context.Background())
		if err != nil {
			return false, err.Error()
		}
		return info.NumAckPending == 1 && info.NumRedelivered == 0, fmt.Sprintf("%d pending, %d redelivered", info.NumAckPending, info.NumRedelivered)
	})
	g.open <- struct{}{}
	accepted(t, h.waitResult(contract.ResultSubject(held.ID)))
	h.waitSettled()
}

func TestReplayNeverStoresTheResultAgain(t *testing.T) {
	count := &counter{}
	h := startHarness(t, aggregator.Config{Observer: count})
	id := newID("ord")
	create := cmd{ID: newID("cmd"), Type: "CreateOrder", OrderID: id, Data: map[string]any{"customerId": "c"}}
	submit := cmd{ID: newID("cmd"), Type: "SubmitOrder", OrderID: id}
	accepted(t, h.send(create))
	rejectedWith(t, h.send(submit), contract.CodeInvalidState)
	results, err := h.js.Stream(context.Background(), contract.ResultsStream)
	if err != nil {
		t.Fatal(err)
	}
	stored := func() map[string]uint64 {
		seqs := map[string]uint64{}
		for _, c := range []cmd{create, submit} {
			m, err := results.GetLastMsgForSubject(context.Background(), contract.ResultSubject(c.ID))
			if err != nil {
				t.Fatal(err)
			}
			seqs[c.ID] = m.Sequence
		}
		return seqs
	}
	before := stored()
	// Re-sent without Nats-Msg-Id, as after the duplicate window.
	for _, c := range []cmd{create, submit} {
		body, _ := json.Marshal(c)
		h.publish(contract.CommandSubject(c.OrderID, c.Type), "", body)
	}
	waitCount(t, &count.replayed, 2, "replayed outcomes")
	if after := stored(); fmt.Sprint(after) != fmt.Sprint(before) {
		t.Fatalf("results stored again: sequences %v, before %v", after, before)
	}
	if n := h.streamMessages(contract.ResultsStream); n != 2 {
		t.Fatalf("%d results stored for 2 commands", n)
	}
}
