package client_test

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log"
	"time"

	"github.com/jetsource/jetsource/client"
	"github.com/jetsource/jetsource/contract"
)

// Send a command and wait for its result. A rejection comes back as an
// error that carries the wire code and the reason.
func ExampleClient_Send() {
	nc := jetsource() // a NATS connection, with JetSource running
	c, err := client.New(nc)
	if err != nil {
		log.Fatal(err)
	}
	ctx := context.Background()

	r, err := c.Send(ctx, client.NewEnvelope("ord-1", contract.CreateOrder{CustomerID: "cust-1", Currency: "EUR"}))
	if err != nil {
		log.Fatal(err)
	}
	fmt.Println(r.Status, "at version", r.Version)

	_, err = c.Send(ctx, client.NewEnvelope("ord-1", contract.SubmitOrder{}))
	var rejected *client.RejectedError
	if errors.As(err, &rejected) {
		fmt.Println(rejected.Code()+":", rejected.Result.Error.Message)
	}
	// Output:
	// accepted at version 1
	// invalid_state: cannot submit an order without items
}

// Read an order's history and switch over the typed data of its events.
func ExampleClient_Events() {
	c, err := client.New(jetsource())
	if err != nil {
		log.Fatal(err)
	}
	ctx := context.Background()
	create := contract.CreateOrder{CustomerID: "cust-1", Items: []contract.AddItem{{ProductID: "sku-1", Quantity: 2, UnitPriceCents: 1999}}}
	if _, err := c.Send(ctx, client.NewEnvelope("ord-1", create)); err != nil {
		log.Fatal(err)
	}

	events, err := c.Events(ctx, "ord-1")
	if err != nil {
		log.Fatal(err)
	}
	for _, e := range events {
		data, err := client.DecodeEvent(e)
		if err != nil {
			log.Fatal(err)
		}
		switch d := data.(type) {
		case contract.OrderCreated:
			fmt.Println(e.Version, "created for", d.CustomerID, "in", d.Currency)
		case contract.ItemAdded:
			fmt.Println(e.Version, "added", d.Quantity, "x", d.ProductID, "at", d.UnitPriceCents, "cents")
		}
	}
	// Output:
	// 1 created for cust-1 in USD
	// 2 added 2 x sku-1 at 1999 cents
}

// Follow the events of every order as they are stored. Pass an order id
// to follow one order, and the Sequence of the last event handled to
// resume after it.
func ExampleClient_Follow() {
	c, err := client.New(jetsource())
	if err != nil {
		log.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	for _, id := range []string{"ord-1", "ord-2"} {
		if _, err := c.Send(ctx, client.NewEnvelope(id, contract.CreateOrder{CustomerID: "cust-1"})); err != nil {
			log.Fatal(err)
		}
	}

	for f, err := range c.Follow(ctx, "", 0) {
		if err != nil {
			log.Fatal(err)
		}
		fmt.Println(f.Event.Sequence, f.Event.AggregateID, f.Event.Type)
		if f.Event.AggregateID == "ord-2" {
			break
		}
	}
	// Output:
	// 1 ord-1 OrderCreated
	// 2 ord-2 OrderCreated
}

// Ask the orders-query service what an order was at a version; an order
// or a version that does not exist is a QueryError with code 404.
func ExampleClient_State() {
	c, err := client.New(jetsource())
	if err != nil {
		log.Fatal(err)
	}
	ctx := context.Background()
	for _, cmd := range []contract.Command{
		contract.CreateOrder{CustomerID: "cust-1", Items: []contract.AddItem{{ProductID: "sku-1", Quantity: 2, UnitPriceCents: 1999}}},
		contract.SubmitOrder{},
	} {
		if _, err := c.Send(ctx, client.NewEnvelope("ord-1", cmd)); err != nil {
			log.Fatal(err)
		}
	}

	s, err := c.State(ctx, contract.StateQuery{OrderID: "ord-1", Version: 2})
	if err != nil {
		log.Fatal(err)
	}
	fmt.Println(s.Status, s.TotalCents, "at version", s.Version)

	_, err = c.State(ctx, contract.StateQuery{OrderID: "ord-1", Version: 7})
	var qerr *client.QueryError
	if errors.As(err, &qerr) {
		fmt.Println(qerr.Code, qerr.Message)
	}
	// Output:
	// draft 3998 at version 2
	// 404 order ord-1 is at version 3; it has no version 7
}

// Events stored before a change of shape decode in the current one.
func ExampleDecodeEvent() {
	stored := contract.Event{Type: contract.TypeOrderShipped, SchemaVersion: 1,
		Data: json.RawMessage(`{"trackingNumber":"1Z999","carrier":"UPS"}`)}
	data, err := client.DecodeEvent(stored)
	if err != nil {
		log.Fatal(err)
	}
	shipped := data.(contract.OrderShipped)
	fmt.Println(shipped.Shipment.Carrier, shipped.Shipment.TrackingNumber)
	// Output: UPS 1Z999
}
