// Package workload generates realistic command streams for benchmarks,
// fault tests and the dev stack's demo: orders going through their whole
// lifecycle, with the mix of paths and mistakes real clients produce.
package workload

import (
	"encoding/json"
	"fmt"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/jetsource/jetsource/contract"
)

// Command is one command message ready to publish, with the outcome the
// domain must give it.
type Command struct {
	ID, OrderID, Type string
	Body              []byte
	// WantAccepted is false for commands the workload sends knowing they
	// will be rejected.
	WantAccepted bool
}

// Msg is the command as a NATS message on its contract subject.
func (c Command) Msg() *nats.Msg {
	m := nats.NewMsg(contract.CommandSubject(c.OrderID, c.Type))
	m.Header.Set(jetstream.MsgIDHeader, c.ID)
	m.Data = c.Body
	return m
}

func newCommand(id, orderID, typ string, data any, accepted bool) Command {
	body, err := json.Marshal(map[string]any{"id": id, "type": typ, "orderId": orderID, "data": data,
		"metadata": map[string]any{"userId": "workload", "correlationId": orderID}})
	if err != nil {
		panic(fmt.Sprintf("encode %s: %v", typ, err)) // the data above is always encodable
	}
	return Command{ID: id, OrderID: orderID, Type: typ, Body: body, WantAccepted: accepted}
}

// Lifecycle is order i's commands, in order. Most orders are delivered;
// every tenth has an item removed, one in ten is canceled after payment and
// one in ten stays paid; one in twenty first sends a wrong amount, which is
// rejected. run keeps ids of different runs apart.
func Lifecycle(run string, i int) []Command {
	orderID := fmt.Sprintf("%s-ord-%d", run, i)
	var out []Command
	add := func(typ string, data any, accepted bool) {
		out = append(out, newCommand(fmt.Sprintf("%s-cmd-%d-%d", run, i, len(out)), orderID, typ, data, accepted))
	}
	add("CreateOrder", map[string]any{"customerId": fmt.Sprintf("cust-%d", i%1000), "currency": currencies[i%len(currencies)]}, true)
	add("AddItem", map[string]any{"productId": "sku-a", "quantity": 2, "unitPriceCents": 1999}, true)
	add("AddItem", map[string]any{"productId": fmt.Sprintf("sku-%d", i%50), "quantity": 1 + i%3, "unitPriceCents": 500}, true)
	total := 2*1999 + (1+i%3)*500
	if i%10 == 0 {
		add("RemoveItem", map[string]any{"productId": "sku-a"}, true)
		total -= 2 * 1999
	}
	add("SubmitOrder", nil, true)
	if i%20 == 1 {
		add("PayOrder", map[string]any{"paymentId": fmt.Sprintf("pay-%d", i), "amountCents": total + 1, "method": "card"}, false)
	}
	add("PayOrder", map[string]any{"paymentId": fmt.Sprintf("pay-%d", i), "amountCents": total, "method": "card"}, true)
	switch i % 10 {
	case 2:
		add("CancelOrder", map[string]any{"reason": "customer asked"}, true)
	case 3:
	default:
		add("ShipOrder", map[string]any{"trackingNumber": fmt.Sprintf("TRK%d", i), "carrier": "DHL"}, true)
		add("DeliverOrder", nil, true)
	}
	return out
}

var currencies = []string{"EUR", "USD", "GBP"}

// Waves orders the commands of n orders for publishing: every order's first
// command, then every order's second, and so on. Each order's commands stay
// in order, and neighbours belong to different orders.
func Waves(run string, n int) []Command {
	perOrder := make([][]Command, n)
	longest := 0
	for i := range n {
		perOrder[i] = Lifecycle(run, i)
		longest = max(longest, len(perOrder[i]))
	}
	var out []Command
	for k := range longest {
		for _, cmds := range perOrder {
			if k < len(cmds) {
				out = append(out, cmds[k])
			}
		}
	}
	return out
}

// BigOrder is one order's CreateOrder followed by AddItem commands, n
// commands in all, cycling through 400 products.
func BigOrder(run string, n int) []Command {
	orderID := run + "-ord"
	out := make([]Command, n)
	for i := range n {
		typ, data := "AddItem", any(map[string]any{"productId": fmt.Sprintf("sku-%d", i%400), "quantity": 1, "unitPriceCents": 250})
		if i == 0 {
			typ, data = "CreateOrder", map[string]any{"customerId": "c"}
		}
		out[i] = newCommand(fmt.Sprintf("%s-cmd-%d", run, i), orderID, typ, data, true)
	}
	return out
}
