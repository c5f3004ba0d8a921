package client_test

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"testing"
	"time"

	"github.com/nats-io/nats.go/jetstream"

	"github.com/jetsource/jetsource/client"
	"github.com/jetsource/jetsource/contract"
	"github.com/jetsource/jetsource/internal/es"
)

// TestFollow follows one order live, then all orders from the start and
// from a sequence; events stored at an older schema version arrive upcast.
func TestFollow(t *testing.T) {
	nc := jetsource()
	c, err := client.New(nc)
	if err != nil {
		t.Fatal(err)
	}
	js, err := jetstream.New(nc)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()

	// An order shipped at OrderShipped schema version 1.
	var v1 []contract.Event
	for i, e := range [][2]string{
		{contract.TypeOrderCreated, `{"customerId":"c","currency":"EUR"}`},
		{contract.TypeItemAdded, `{"productId":"p","quantity":1,"unitPriceCents":5}`},
		{contract.TypeOrderSubmitted, `{"totalCents":5,"itemCount":1}`},
		{contract.TypeOrderPaid, `{"paymentId":"pay","amountCents":5,"method":"card"}`},
		{contract.TypeOrderShipped, `{"trackingNumber":"1Z999","carrier":"UPS"}`},
	} {
		v1 = append(v1, contract.Event{ID: es.NewEventID(time.Now()), AggregateType: "order", AggregateID: "ord-v1", Type: e[0],
			SchemaVersion: 1, Version: int64(i + 1), Data: json.RawMessage(e[1]), Metadata: contract.EventMetadata{Timestamp: contract.Time{Time: time.Now()}}})
	}
	lastV1, err := es.NewStore(js, contract.DefaultPartitions).Append(ctx, "ord-v1", 0, v1)
	if err != nil {
		t.Fatal(err)
	}

	// One order, live: the third event is stored while following.
	if _, err := c.Send(ctx, client.NewEnvelope("ord-f", contract.CreateOrder{CustomerID: "c", Items: []contract.AddItem{{ProductID: "a", Quantity: 1, UnitPriceCents: 1}}})); err != nil {
		t.Fatal(err)
	}
	var got []string
	for f, err := range c.Follow(ctx, "ord-f", 0) {
		if err != nil {
			t.Fatal(err)
		}
		got = append(got, fmt.Sprintf("%d %T", f.Event.Version, f.Data))
		if len(got) == 2 {
			if _, err := c.Send(ctx, client.NewEnvelope("ord-f", contract.AddItem{ProductID: "b", Quantity: 2, UnitPriceCents: 3})); err != nil {
				t.Fatal(err)
			}
		}
		if len(got) == 3 {
			if added, ok := f.Data.(contract.ItemAdded); !ok || added.ProductID != "b" || added.Quantity != 2 {
				t.Fatalf("third event of ord-f: %#v", f.Data)
			}
			break
		}
	}
	if want := "[1 contract.OrderCreated 2 contract.ItemAdded 3 contract.ItemAdded]"; fmt.Sprint(got) != want {
		t.Fatalf("followed ord-f: %v, want %s", got, want)
	}

	// All orders from the start: ord-v1 first, its shipment upcast.
	var all []contract.Event
	for f, err := range c.Follow(ctx, "", 0) {
		if err != nil {
			t.Fatal(err)
		}
		all = append(all, f.Event)
		if f.Event.AggregateID == "ord-v1" && f.Event.Type == contract.TypeOrderShipped {
			want := contract.OrderShipped{Shipment: contract.Shipment{TrackingNumber: "1Z999", Carrier: "UPS"}}
			if f.Event.SchemaVersion != 2 || f.Data != want {
				t.Fatalf("followed OrderShipped of version 1: schema version %d, %#v", f.Event.SchemaVersion, f.Data)
			}
		}
		if len(all) == 8 {
			break
		}
	}
	for i, e := range all {
		if want := map[bool]string{true: "ord-v1", false: "ord-f"}[i < 5]; e.AggregateID != want || e.Sequence != uint64(i+1) {
			t.Fatalf("event %d of all: %s at %d", i, e.AggregateID, e.Sequence)
		}
	}

	// From a sequence: only what was stored after it.
	for f, err := range c.Follow(ctx, "", lastV1) {
		if err != nil || f.Event.AggregateID != "ord-f" || f.Event.Version != 1 {
			t.Fatalf("first event after sequence %d: %+v %v", lastV1, f.Event, err)
		}
		break
	}

	// The end of ctx ends following without an error.
	short, stop := context.WithCancel(ctx)
	defer stop()
	n := 0
	for _, err := range c.Follow(short, "ord-f", 0) {
		if err != nil {
			t.Fatal(err)
		}
		if n++; n == 3 {
			stop()
		}
	}
	if n != 3 {
		t.Fatalf("followed %d events after the context ended", n-3)
	}

	for _, err := range c.Follow(ctx, "ord.*", 0) {
		if !errors.Is(err, contract.ErrInvalidID) {
			t.Fatalf("follow an invalid order id: %v", err)
		}
	}
}
