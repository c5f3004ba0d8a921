package integration

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"math"
	"math/rand/v2"
	"reflect"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/anishathalye/porcupine"

	"github.com/jetsource/jetsource/client"
	"github.com/jetsource/jetsource/contract"
	"github.com/jetsource/jetsource/internal/aggregator"
	"github.com/jetsource/jetsource/internal/es"
	"github.com/jetsource/jetsource/internal/natstest"
	"github.com/jetsource/jetsource/internal/order"
)

// lzInput is one operation of the history: a command on an order, or a
// read of the order's state when cmd is nil.
type lzInput struct {
	orderID string
	cmd     order.Command
}

// lzOutput is what the system answered: for a command the status, error
// code and version; for a read the state it returned. unknown marks a
// command whose outcome the client never learned (no result within its
// timeout while aggregators were being killed): it may have taken effect
// at any point after it was sent, or never.
type lzOutput struct {
	accepted bool
	code     contract.Code
	version  int64
	state    order.State
	unknown  bool
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
			switch {
			case out.unknown && err != nil:
				return true, s
			case out.unknown:
				return true, order.Fold(s, events...)
			case err != nil:
				return !out.accepted && out.code == aggregator.ErrorCode(err), s
			}
			next := order.Fold(s, events...)
			return out.accepted && out.version == next.Version, next
		},
		Equal: func(a, b any) bool { return reflect.DeepEqual(a, b) },
		DescribeOperation: func(input, output any) string {
			in, out := input.(lzInput), output.(lzOutput)
			switch {
			case in.cmd == nil:
				return fmt.Sprintf("%s read → v%d %s %d", in.orderID, out.state.Version, out.state.Status, out.state.TotalCents)
			case out.unknown:
				return fmt.Sprintf("%s %s %+v → unknown", in.orderID, in.cmd.CommandType(), in.cmd)
			}
			return fmt.Sprintf("%s %s %+v → accepted=%v %s v%d", in.orderID, in.cmd.CommandType(), in.cmd, out.accepted, out.code, out.version)
		},
	}
}

// TestCommandsAreLinearizable has concurrent clients send random commands
// and reads on four orders while two aggregator processes are killed with
// SIGKILL and restarted on a seeded schedule, and checks the history
// against the domain as a sequential model: every result and every read
// must be explainable by some order of the operations consistent with
// their real-time order. A command whose result does not come within the
// client's timeout is recorded as of unknown outcome (it may take effect
// later, or never), not as a failure.
func TestCommandsAreLinearizable(t *testing.T) {
	t.Parallel()
	srv, nc, js := natstest.Streams(t, natstest.Partitions)
	// The aggregators run with a short lease TTL, and the bucket with the same.
	topology := natstest.Topology(natstest.Partitions)
	topology.LeaseTTL = 2 * time.Second
	if err := es.Setup(context.Background(), js, topology); err != nil {
		t.Fatal(err)
	}
	// JETSOURCE_CHAOS_LZ_ORDERS sets the operations per client here,
	// JETSOURCE_CHAOS_LZ_KILLS the least number of kills.
	cfg := chaosFromEnv(t, "JETSOURCE_CHAOS_LZ", 50, 3)
	seed := cfg.seed
	t.Logf("seed %d (replay with JETSOURCE_CHAOS_SEED=%d)", seed, seed)
	replica := func(i int) *process {
		return start(t, "aggregator", "NATS_URL="+srv.ClientURL(), "METRICS_ADDR=127.0.0.1:0", "LOG_LEVEL=warn",
			fmt.Sprintf("AGGREGATOR_REPLICA_ID=lz-%d", i), "AGGREGATOR_LEASE_TTL="+topology.LeaseTTL.String())
	}
	replicas := []*process{replica(0), replica(1)}
	c, err := client.New(nc)
	if err != nil {
		t.Fatal(err)
	}
	repo := aggregator.NewRepository(es.NewStore(js, natstest.Partitions), es.RepositoryConfig{})
	read := func(ctx context.Context, orderID string) (order.State, error) {
		l, err := repo.LoadAsOf(ctx, orderID, es.AsOf{})
		return l.State.Order, err
	}

	// Four slots hold an order each. A client that reads an order delivered
	// or canceled puts a new order in its slot and creates it, so that
	// commands keep meeting live orders however long the run.
	var slotsMu sync.Mutex
	orders := []string{"lz-0-0", "lz-1-0", "lz-2-0", "lz-3-0"}
	generation := make([]int, len(orders))
	pick := func(rng *rand.Rand) (int, string) {
		slotsMu.Lock()
		defer slotsMu.Unlock()
		i := rng.IntN(len(orders))
		return i, orders[i]
	}
	retire := func(slot int, id string) (string, bool) {
		slotsMu.Lock()
		defer slotsMu.Unlock()
		if orders[slot] != id {
			return "", false // another client retired it first
		}
		generation[slot]++
		orders[slot] = fmt.Sprintf("lz-%d-%d", slot, generation[slot])
		return orders[slot], true
	}
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
		ret := time.Since(start).Nanoseconds()
		if out.unknown {
			ret = math.MaxInt64
		}
		history = append(history, porcupine.Operation{Input: in, Call: call, Output: out, Return: ret})
	}
	// The kill schedule runs until the clients are done; they go on until
	// it has killed at least minKills times.
	minKills := cfg.kills
	clientsDone := make(chan struct{})
	killerDone := make(chan struct{})
	var kills atomic.Int64
	go func() {
		defer close(killerDone)
		rng := rand.New(rand.NewPCG(seed, 99))
		for {
			select {
			case <-clientsDone:
				return
			case <-time.After(time.Duration(100+rng.IntN(600)) * time.Millisecond): // the kill schedule
			}
			i := rng.IntN(len(replicas))
			replicas[i].kill()
			kills.Add(1)
			time.Sleep(time.Duration(rng.IntN(500)) * time.Millisecond) // the kill schedule: the replica stays down
			replicas[i] = replica(i)
		}
	}()
	var wg sync.WaitGroup
	for client := range 6 {
		wg.Go(func() {
			rng := rand.New(rand.NewPCG(seed, uint64(client)))
			var create string // a new order this client put in a slot
			for n := 0; n < cfg.orders || kills.Load() < int64(minKills); n++ {
				slot, id := pick(rng)
				in := lzInput{orderID: id}
				switch {
				case create != "":
					in, create = lzInput{orderID: create, cmd: order.CreateOrder{CustomerID: "c"}}, ""
				case rng.IntN(5) != 0:
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
				if out.unknown {
					ret = math.MaxInt64 // it may take effect at any time after the call
				}
				if in.cmd == nil && (out.state.Status == order.StatusDelivered || out.state.Status == order.StatusCanceled) {
					create, _ = retire(slot, id)
				}
				mu.Lock()
				history = append(history, porcupine.Operation{ClientId: client, Input: in, Call: call, Output: out, Return: ret})
				mu.Unlock()
			}
		})
	}
	wg.Wait()
	close(clientsDone)
	<-killerDone
	commands, accepted, rejected, unknown := 0, 0, 0, 0
	ids := map[string]bool{}
	for _, op := range history {
		ids[op.Input.(lzInput).orderID] = true
		out := op.Output.(lzOutput)
		switch {
		case op.Input.(lzInput).cmd == nil:
			continue
		case out.unknown:
			unknown++
		case out.accepted:
			accepted++
		default:
			rejected++
		}
		commands++
	}
	result, info := porcupine.CheckOperationsVerbose(orderModel(), history, time.Minute)
	if result != porcupine.Ok {
		path := t.TempDir() + "/linearizability.html"
		_ = porcupine.VisualizePath(orderModel(), info, path)
		t.Fatalf("history is not linearizable (%v); visualization in %s", result, path)
	}
	t.Logf(`
fault: aggregator processes killed (SIGKILL) and restarted while 6 clients send commands and read
  injected     SIGKILL of one of two aggregator processes; faults: %d
  durability   one embedded server, R1, default fsync
  operations   %d over %d orders (seed %d; replay with JETSOURCE_CHAOS_SEED=%d): %d commands, %d reads
  outcomes     %d accepted, %d rejected, %d unknown (no result within 1s)
  history      linearizable against the domain: every result and read is explained by applying each command at most once, in an order consistent with real time
  took         %s`, kills.Load(), len(history), len(ids), seed, seed, commands, len(history)-commands,
		accepted, rejected, unknown, time.Since(start).Round(time.Second))
}

// perform sends a command with the client, or reads the order's state from
// the event store as the aggregator loads it. A command without a result
// within a second has an unknown outcome (a killed replica's partitions
// take longer than that to come back).
func perform(t *testing.T, c *client.Client, read func(context.Context, string) (order.State, error), in lzInput) (lzOutput, bool) {
	ctx, cancel := context.WithTimeout(context.Background(), time.Second)
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
		return lzOutput{unknown: true}, true
	}
}
