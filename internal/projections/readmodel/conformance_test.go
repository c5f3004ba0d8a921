package readmodel_test

import (
	"encoding/json"
	"fmt"
	"testing"
	"time"

	"github.com/jetsource/jetsource/contract"
	"github.com/jetsource/jetsource/internal/order"
	"github.com/jetsource/jetsource/internal/projections/projectiontest"
	"github.com/jetsource/jetsource/internal/projections/readmodel"
)

// TestConformance runs the projection conformance suite over every read
// model. A new read model gets its name in readmodel.Names and passes
// this test.
func TestConformance(t *testing.T) {
	events := history(40)
	for _, name := range readmodel.Names() {
		p, err := readmodel.New(name)
		if err != nil {
			t.Fatal(err)
		}
		t.Run(name, func(t *testing.T) {
			projectiontest.Run(t, projectiontest.Suite{Projection: p, Events: events, Database: cluster.DB})
		})
	}
}

// history decides the lifecycles of n orders with the domain, their
// commands interleaved, and returns the events as the aggregator would
// store them, an event every seven minutes (so that sales span days).
// Most orders are delivered; some add to a line, some lose an item and
// some get it back, some are canceled after payment, some stay paid or in
// draft.
func history(n int) []contract.Event {
	type lifecycle struct {
		id    string
		state order.State
		next  []func(order.State) order.Command
	}
	clock := time.Date(2026, 5, 1, 22, 0, 0, 0, time.UTC)
	orders := make([]*lifecycle, n)
	for i := range orders {
		steps := []func(order.State) order.Command{
			func(order.State) order.Command {
				return order.CreateOrder{CustomerID: fmt.Sprintf("cust-%d", i%7), Currency: []string{"EUR", "USD", "GBP"}[i%3]}
			},
			func(order.State) order.Command {
				return order.AddItem{ProductID: "sku-a", Quantity: 2, UnitPriceCents: 1999}
			},
			func(order.State) order.Command {
				return order.AddItem{ProductID: fmt.Sprintf("sku-%d", i%5), Quantity: int64(1 + i%3), UnitPriceCents: 500}
			},
		}
		if i%3 == 0 { // adds to the line
			steps = append(steps, func(order.State) order.Command {
				return order.AddItem{ProductID: "sku-a", Quantity: 3, UnitPriceCents: 1999}
			})
		}
		if i%4 == 0 {
			steps = append(steps, func(order.State) order.Command { return order.RemoveItem{ProductID: "sku-a"} })
		}
		if i%8 == 0 { // the line again, after its removal
			steps = append(steps, func(order.State) order.Command {
				return order.AddItem{ProductID: "sku-a", Quantity: 1, UnitPriceCents: 1999}
			})
		}
		if i%9 != 8 { // stays a draft
			steps = append(steps, func(order.State) order.Command { return order.SubmitOrder{} },
				func(s order.State) order.Command {
					return order.PayOrder{PaymentID: fmt.Sprintf("pay-%d", i), AmountCents: s.TotalCents, Method: "card"}
				})
			switch i % 6 {
			case 1:
				steps = append(steps, func(order.State) order.Command { return order.CancelOrder{Reason: "changed mind"} })
			case 2: // stays paid
			default:
				steps = append(steps, func(order.State) order.Command {
					return order.ShipOrder{TrackingNumber: fmt.Sprintf("trk-%d", i), Carrier: "ups"}
				},
					func(order.State) order.Command { return order.DeliverOrder{} })
			}
		}
		orders[i] = &lifecycle{id: fmt.Sprintf("conf-%d", i), next: steps}
	}
	var out []contract.Event
	for len(orders) > 0 {
		for i := 0; i < len(orders); i++ {
			o := orders[i]
			cmd := o.next[0](o.state)
			decided, err := order.Decide(o.state, cmd)
			if err != nil {
				panic(fmt.Sprintf("%s %s: %v", o.id, cmd.CommandType(), err)) // the lifecycles above are valid
			}
			for _, d := range decided {
				o.state = order.Evolve(o.state, d)
				clock = clock.Add(7 * time.Minute)
				data, _ := json.Marshal(d)
				out = append(out, contract.Event{ID: fmt.Sprintf("evt-%s-%d", o.id, o.state.Version), AggregateType: order.AggregateType,
					AggregateID: o.id, Type: d.EventType(), SchemaVersion: contract.SchemaVersion(d.EventType()), Version: o.state.Version,
					Data: data, Metadata: contract.EventMetadata{UserID: "u", CorrelationID: o.id, CausationID: fmt.Sprintf("cmd-%s-%d", o.id, o.state.Version),
						Timestamp: contract.Time{Time: clock}}})
			}
			if o.next = o.next[1:]; len(o.next) == 0 {
				orders = append(orders[:i], orders[i+1:]...)
				i--
			}
		}
	}
	return out
}
