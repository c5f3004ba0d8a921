package integration

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"math/rand/v2"
	"reflect"
	"sync"
	"testing"
	"time"

	"github.com/anishathalye/porcupine"

	"github.com/jetsource/jetsource/client"
	"github.com/jetsource/jetsource/contract"
	"github.com/jetsource/jetsource/internal/aggregator"
	"github.com/jetsource/jetsource/internal/es"
	"github.com/jetsource/jetsource/internal/natstest"
	"github.com/jetsource/jetsource/internal/order"
	"github.com/jetsource/jetsource/internal/servicetest"
)

// lzInput is one operation of the history: a command on an order, or a
// read of the order's state when cmd is nil.
type lzInput struct {
	orderID string
	cmd     order.Command
}

// lzOutput is what the system answered: for a command the status, error
// code and version; for a read the state it returned.
type lzOutput struct {
	accepted bool
	code     contract.Code
	version  int64
	state    order.State
}

// orderModel is the sequential specification: the domain itself, applied
// one operation at a time to one order.
func orderModel() porcupine.Model {
	return porcupine.Model{
		Partition: func(history []porcupine.Operation) [][]porcupine.Operation {
			byOrder := map[string][]porcupine.Operation{}
			for _, op := range history {
				id := op.Input.(lzInput).orderID
				byOrder[id] = append(byOrder[id], op)
			}
			var out [][]porcupine.Operation
			for _, ops := range byOrder {
				out = append(out, ops)
			}
			return out
		},
		Init: func() any { return order.State{} },
		Step: func(state, input, output any) (bool, any) {
			s, in, out := state.(order.State), input.(lzInput), output.(lzOutput)
			if s.ID == "" {
				s = order.New(in.orderID)
			}
			if in.cmd == nil {
				return reflect.DeepEqual(out.state, s), s
			}
			events, err := order.Decide(s, in.cmd)
			if err != nil {
				return !out.accepted && out.code == aggregator.ErrorCode(err), s
			}
			next := order.Fold(s, events...)
			return out.accepted && out.version == next.Version, next
		},
		Equal: func(a, b any) bool { return reflect.DeepEqual(a, b) },
		DescribeOperation: func(input, output any) string {
			in, out := input.(lzInput), output.(lzOutput)
			if in.cmd == nil {
				return fmt.Sprintf("%s read → v%d %s %d", in.orderID, out.state.Version, out.state.Status, out.state.TotalCents)
			}
			return fmt.Sprintf("%s %s %+v → accepted=%v %s v%d", in.orderID, in.cmd.CommandType(), in.cmd, out.accepted, out.code, out.version)
		},
	}
}

// TestCommandsAreLinearizable has concurrent clients send random commands
// and reads on four orders and checks the history against the domain as a
// sequential model: every result and every read must be explainable by some
// order of the operations consistent with their real-time order.
func TestCommandsAreLinearizable(t *testing.T) {
	srv, nc, js := natstest.Streams(t, natstest.Partitions)
	servicetest.Aggregator(t, srv.ClientURL())
	c, err := client.New(nc)
	if err != nil {
		t.Fatal(err)
	}
	repo := aggregator.NewRepository(es.NewStore(js, natstest.Partitions), es.RepositoryConfig{})
	read := func(ctx context.Context, orderID string) (order.State, error) {
		l, err := repo.LoadAsOf(ctx, orderID, es.AsOf{})
		return l.State.Order, err
	}

	seed := uint64(time.Now().UnixNano())
	t.Logf("seed %d", seed)
	orders := []string{"lz-a", "lz-b", "lz-c", "lz-d"}
	// Weighted so that orders live long enough for every transition to be
	// exercised: mostly adds, some payments at plausible amounts, rare
	// cancellations.
	randomCommand := func(rng *rand.Rand) order.Command {
		switch n := rng.IntN(24); {
		case n < 1:
			return order.CreateOrder{CustomerID: "c"}
		case n < 11:
			return order.AddItem{ProductID: fmt.Sprintf("p%d", rng.IntN(3)), Quantity: int64(1 + rng.IntN(2)), UnitPriceCents: 100}
		case n < 13:
			return order.RemoveItem{ProductID: fmt.Sprintf("p%d", rng.IntN(3))}
		case n < 15:
			return order.SubmitOrder{}
		case n < 19:
			return order.PayOrder{PaymentID: "pay", AmountCents: int64(100 * (1 + rng.IntN(4))), Method: "card"}
		case n < 21:
			return order.ShipOrder{TrackingNumber: "t", Carrier: "c"}
		case n < 23:
			return order.DeliverOrder{}
		default:
			return order.CancelOrder{Reason: "r"}
		}
	}
	start := time.Now()
	var mu sync.Mutex
	var history []porcupine.Operation
	for _, id := range orders {
		in := lzInput{orderID: id, cmd: order.CreateOrder{CustomerID: "c"}}
		call := time.Since(start).Nanoseconds()
		out, ok := perform(t, c, read, in)
		if !ok {
			t.FailNow()
		}
		history = append(history, porcupine.Operation{Input: in, Call: call, Output: out, Return: time.Since(start).Nanoseconds()})
	}
	var wg sync.WaitGroup
	for client := range 6 {
		wg.Go(func() {
			rng := rand.New(rand.NewPCG(seed, uint64(client)))
			for range 50 {
				in := lzInput{orderID: orders[rng.IntN(len(orders))]}
				if rng.IntN(5) != 0 {
					in.cmd = randomCommand(rng)
				}
				if pay, ok := in.cmd.(order.PayOrder); ok && rng.IntN(2) == 0 {
					// Pay what a read says the total is: right unless
					// another client changed the order in between.
					if s, err := read(context.Background(), in.orderID); err == nil {
						pay.AmountCents = s.TotalCents
						in.cmd = pay
					}
				}
				call := time.Since(start).Nanoseconds()
				out, ok := perform(t, c, read, in)
				ret := time.Since(start).Nanoseconds()
				if !ok {
					return
				}
				mu.Lock()
				history = append(history, porcupine.Operation{ClientId: client, Input: in, Call: call, Output: out, Return: ret})
				mu.Unlock()
			}
		})
	}
	wg.Wait()
	accepted := 0
	for _, op := range history {
		if op.Input.(lzInput).cmd != nil && op.Output.(lzOutput).accepted {
			accepted++
		}
	}
	t.Logf("%d operations, %d commands accepted", len(history), accepted)
	result, info := porcupine.CheckOperationsVerbose(orderModel(), history, time.Minute)
	if result != porcupine.Ok {
		path := t.TempDir() + "/linearizability.html"
		_ = porcupine.VisualizePath(orderModel(), info, path)
		t.Fatalf("history is not linearizable (%v); visualization in %s", result, path)
	}
}

// perform sends a command with the client, or reads the order's state from
// the event store as the aggregator loads it.
func perform(t *testing.T, c *client.Client, read func(context.Context, string) (order.State, error), in lzInput) (lzOutput, bool) {
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	if in.cmd == nil {
		s, err := read(ctx, in.orderID)
		if err != nil {
			t.Errorf("read %s: %v", in.orderID, err)
			return lzOutput{}, false
		}
		return lzOutput{state: s}, true
	}
	data, err := json.Marshal(in.cmd)
	if err != nil {
		t.Errorf("encode %s: %v", in.cmd.CommandType(), err)
		return lzOutput{}, false
	}
	cmd, err := contract.ParseCommand(in.cmd.CommandType(), data)
	if err != nil {
		t.Errorf("the contract does not read %s %s: %v", in.cmd.CommandType(), data, err)
		return lzOutput{}, false
	}
	r, err := c.Send(ctx, client.NewEnvelope(in.orderID, cmd))
	var rejected *client.RejectedError
	switch {
	case err == nil:
		return lzOutput{accepted: true, version: r.Version}, true
	case errors.As(err, &rejected):
		return lzOutput{code: rejected.Code()}, true
	default:
		t.Errorf("send %s: %v", in.cmd.CommandType(), err)
		return lzOutput{}, false
	}
}
