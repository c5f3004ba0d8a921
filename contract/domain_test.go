package contract_test

import (
	"encoding/json"
	"slices"
	"strings"
	"testing"

	"github.com/jetsource/jetsource/contract"
	"github.com/jetsource/jetsource/internal/order"
)

// The order domain keeps its own command and event types; these tests pin
// that it reads and writes exactly the JSON of the contract's types.

func TestCommandsHaveTheDomainsJSON(t *testing.T) {
	samples := []contract.Command{
		contract.CreateOrder{CustomerID: "c-1", Currency: "EUR", Items: []contract.AddItem{{ProductID: "p-1", Quantity: 2, UnitPriceCents: 150}}},
		contract.AddItem{ProductID: "p-1", Quantity: 2, UnitPriceCents: 150},
		contract.RemoveItem{ProductID: "p-1"},
		contract.SubmitOrder{},
		contract.PayOrder{PaymentID: "pay-1", AmountCents: 300, Method: "card"},
		contract.ShipOrder{TrackingNumber: "1Z999", Carrier: "ups"},
		contract.DeliverOrder{},
		contract.CancelOrder{Reason: "changed my mind"},
	}
	var types []string
	for _, c := range samples {
		types = append(types, c.CommandType())
		data, err := json.Marshal(c)
		if err != nil {
			t.Fatal(err)
		}
		domain, err := order.ParseCommand(c.CommandType(), data)
		if err != nil {
			t.Fatalf("the domain does not read %s %s: %v", c.CommandType(), data, err)
		}
		back, err := json.Marshal(domain)
		if err != nil || string(back) != string(data) {
			t.Errorf("%s: the contract writes %s, the domain %s (%v)", c.CommandType(), data, back, err)
		}
		parsed, err := contract.ParseCommand(c.CommandType(), data)
		if err != nil || !equalJSON(t, parsed, c) {
			t.Errorf("%s: ParseCommand(%s) = %+v, %v", c.CommandType(), data, parsed, err)
		}
	}
	if !slices.Equal(types, contract.CommandTypes()) || !slices.Equal(types, order.CommandTypes()) {
		t.Errorf("samples %v, contract %v, domain %v", types, contract.CommandTypes(), order.CommandTypes())
	}
}

func TestEventsHaveTheDomainsJSON(t *testing.T) {
	samples := []order.Event{
		order.OrderCreated{CustomerID: "c-1", Currency: "EUR"},
		order.ItemAdded{ProductID: "p-1", Quantity: 2, UnitPriceCents: 150},
		order.ItemRemoved{ProductID: "p-1"},
		order.OrderSubmitted{TotalCents: 300, ItemCount: 1},
		order.OrderPaid{PaymentID: "pay-1", AmountCents: 300, Method: "card"},
		order.OrderShipped{Shipment: order.Shipment{TrackingNumber: "1Z999", Carrier: "ups"}},
		order.OrderDelivered{},
		order.OrderCanceled{Reason: "changed my mind"},
	}
	var types []string
	for _, e := range samples {
		types = append(types, e.EventType())
		data, err := json.Marshal(e)
		if err != nil {
			t.Fatal(err)
		}
		wire, err := contract.ParseEventData(e.EventType(), data)
		if err != nil || wire.EventType() != e.EventType() {
			t.Fatalf("the contract does not read %s %s: %v", e.EventType(), data, err)
		}
		if !equalJSON(t, wire, e) {
			t.Errorf("%s: the domain writes %s, the contract reads %+v", e.EventType(), data, wire)
		}
	}
	if !slices.Equal(types, contract.EventTypes()) {
		t.Errorf("samples %v, contract %v", types, contract.EventTypes())
	}
}

func TestOrderStateHasTheDomainsJSON(t *testing.T) {
	s := order.Fold(order.New("ord-1"),
		order.OrderCreated{CustomerID: "c-1", Currency: "EUR"},
		order.ItemAdded{ProductID: "p-1", Quantity: 2, UnitPriceCents: 150},
		order.OrderSubmitted{TotalCents: 300, ItemCount: 1},
		order.OrderPaid{PaymentID: "pay-1", AmountCents: 300, Method: "card"},
		order.OrderShipped{Shipment: order.Shipment{TrackingNumber: "1Z999", Carrier: "ups"}},
		order.OrderCanceled{Reason: "r"})
	data, err := json.Marshal(s)
	if err != nil {
		t.Fatal(err)
	}
	var wire contract.OrderState
	dec := json.NewDecoder(strings.NewReader(string(data)))
	dec.DisallowUnknownFields()
	if err := dec.Decode(&wire); err != nil || !equalJSON(t, wire, s) {
		t.Errorf("the domain writes %s, the contract reads %+v (%v)", data, wire, err)
	}
}

func TestIDRulesAreTheDomains(t *testing.T) {
	for _, id := range []string{"a", "ord-1", "ORD_2", "0", "-", "_", strings.Repeat("z", 128), strings.Repeat("z", 129),
		"", " ", "a b", "a.b", "*", ">", "a/b", "é", "a\x00", "a\n", "ord-1.>", "ord-1*"} {
		c, d := contract.ValidateID("id", id), order.ValidateID("id", id)
		if (c == nil) != (d == nil) {
			t.Errorf("id %q: contract says %v, domain says %v", id, c, d)
		}
	}
}

// equalJSON reports whether a and b encode to the same JSON.
func equalJSON(t *testing.T, a, b any) bool {
	t.Helper()
	ja, err := json.Marshal(a)
	if err != nil {
		t.Fatal(err)
	}
	jb, err := json.Marshal(b)
	if err != nil {
		t.Fatal(err)
	}
	return string(ja) == string(jb)
}
