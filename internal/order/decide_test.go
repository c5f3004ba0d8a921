package order_test

import (
	"errors"
	"fmt"
	"math"
	"reflect"
	"strings"
	"testing"

	"github.com/jetsource/jetsource/internal/order"
)

// Fixtures: the histories that put an order in each status.
var (
	created      = order.OrderCreated{CustomerID: "cust-1", Currency: "USD"}
	added        = order.ItemAdded{ProductID: "sku-1", Quantity: 2, UnitPriceCents: 1000}
	submitted    = order.OrderSubmitted{TotalCents: 2000, ItemCount: 1}
	paid         = order.OrderPaid{PaymentID: "pay-1", AmountCents: 2000, Method: "card"}
	shipped      = order.OrderShipped{Shipment: order.Shipment{TrackingNumber: "1Z999", Carrier: "UPS"}}
	delivered    = order.OrderDelivered{}
	canceledEvt  = order.OrderCanceled{Reason: "changed my mind"}
	historyNamed = []struct {
		name  string
		given []order.Event
	}{
		{"none", nil},
		{"draft-empty", []order.Event{created}},
		{"draft", []order.Event{created, added}},
		{"submitted", []order.Event{created, added, submitted}},
		{"paid", []order.Event{created, added, submitted, paid}},
		{"shipped", []order.Event{created, added, submitted, paid, shipped}},
		{"delivered", []order.Event{created, added, submitted, paid, shipped, delivered}},
		{"canceled", []order.Event{created, added, canceledEvt}},
	}
)

// Valid commands and the event each produces when accepted.
var commands = []struct {
	name string
	cmd  order.Command
	then []order.Event
}{
	{"create", order.CreateOrder{CustomerID: "cust-1"}, []order.Event{created}},
	{"add", order.AddItem{ProductID: "sku-2", Quantity: 1, UnitPriceCents: 500}, []order.Event{order.ItemAdded{ProductID: "sku-2", Quantity: 1, UnitPriceCents: 500}}},
	{"remove", order.RemoveItem{ProductID: "sku-1"}, []order.Event{order.ItemRemoved{ProductID: "sku-1"}}},
	{"submit", order.SubmitOrder{}, []order.Event{submitted}},
	{"pay", order.PayOrder{PaymentID: "pay-1", AmountCents: 2000, Method: "card"}, []order.Event{paid}},
	{"ship", order.ShipOrder{TrackingNumber: "1Z999", Carrier: "UPS"}, []order.Event{shipped}},
	{"deliver", order.DeliverOrder{}, []order.Event{delivered}},
	{"cancel", order.CancelOrder{Reason: "changed my mind"}, []order.Event{canceledEvt}},
}

// TestDecideEveryCommandInEveryStatus is the lifecycle table: given the
// events of a status, when each command, then its event or the error class.
// Columns follow the order of commands above.
func TestDecideEveryCommandInEveryStatus(t *testing.T) {
	const (
		ok  = "ok"
		nf  = "not_found"
		ex  = "already_exists"
		bad = "invalid_state"
	)
	outcomes := map[string][8]string{
		//               create add  remove submit pay  ship deliver cancel
		"none":        {ok, nf, nf, nf, nf, nf, nf, nf},
		"draft-empty": {ex, ok, bad, bad, bad, bad, bad, ok},
		"draft":       {ex, ok, ok, ok, bad, bad, bad, ok},
		"submitted":   {ex, bad, bad, bad, ok, bad, bad, ok},
		"paid":        {ex, bad, bad, bad, bad, ok, bad, ok},
		"shipped":     {ex, bad, bad, bad, bad, bad, ok, bad},
		"delivered":   {ex, bad, bad, bad, bad, bad, bad, bad},
		"canceled":    {ex, bad, bad, bad, bad, bad, bad, bad},
	}
	sentinels := map[string]error{nf: order.ErrNotFound, ex: order.ErrAlreadyExists, bad: order.ErrInvalidState}
	for _, h := range historyNamed {
		for i, c := range commands {
			want := outcomes[h.name][i]
			t.Run(h.name+"/"+c.name, func(t *testing.T) {
				state := order.Fold(order.New("ord-1"), h.given...)
				got, err := order.Decide(state, c.cmd)
				if want == ok {
					if err != nil {
						t.Fatalf("Decide: %v, want %v", err, c.then)
					}
					if !reflect.DeepEqual(got, c.then) {
						t.Fatalf("events = %#v, want %#v", got, c.then)
					}
					return
				}
				if !errors.Is(err, sentinels[want]) {
					t.Fatalf("Decide = %v, %v; want %s", got, err, want)
				}
				if got != nil {
					t.Fatalf("rejected command returned events %v", got)
				}
			})
		}
	}
}

func TestDecideRules(t *testing.T) {
	many := []order.Event{created}
	for i := range order.MaxItems {
		many = append(many, order.ItemAdded{ProductID: fmt.Sprintf("p-%d", i), Quantity: 1, UnitPriceCents: 1})
	}
	tests := []struct {
		name    string
		given   []order.Event
		when    order.Command
		then    []order.Event
		wantErr error
		errText string
	}{
		{
			name: "create defaults the currency to USD",
			when: order.CreateOrder{CustomerID: "c"},
			then: []order.Event{order.OrderCreated{CustomerID: "c", Currency: "USD"}},
		},
		{
			name: "create keeps a given currency",
			when: order.CreateOrder{CustomerID: "c", Currency: "EUR"},
			then: []order.Event{order.OrderCreated{CustomerID: "c", Currency: "EUR"}},
		},
		{
			name: "create with items emits one event per item, merging a repeated product",
			when: order.CreateOrder{CustomerID: "c", Items: []order.AddItem{
				{ProductID: "a", Quantity: 1, UnitPriceCents: 100},
				{ProductID: "b", Quantity: 2, UnitPriceCents: 50},
				{ProductID: "a", Quantity: 3, UnitPriceCents: 100},
			}},
			then: []order.Event{
				order.OrderCreated{CustomerID: "c", Currency: "USD"},
				order.ItemAdded{ProductID: "a", Quantity: 1, UnitPriceCents: 100},
				order.ItemAdded{ProductID: "b", Quantity: 2, UnitPriceCents: 50},
				order.ItemAdded{ProductID: "a", Quantity: 3, UnitPriceCents: 100},
			},
		},
		{
			name:    "create with an item at two prices is an invalid command",
			when:    order.CreateOrder{CustomerID: "c", Items: []order.AddItem{{ProductID: "a", Quantity: 1, UnitPriceCents: 100}, {ProductID: "a", Quantity: 1, UnitPriceCents: 200}}},
			wantErr: order.ErrInvalidCommand,
			errText: "items[1]",
		},
		{
			name:  "adding a product already present adds to its quantity",
			given: []order.Event{created, added},
			when:  order.AddItem{ProductID: "sku-1", Quantity: 5, UnitPriceCents: 1000},
			then:  []order.Event{order.ItemAdded{ProductID: "sku-1", Quantity: 5, UnitPriceCents: 1000}},
		},
		{
			name:    "adding a product present at another price is rejected",
			given:   []order.Event{created, added},
			when:    order.AddItem{ProductID: "sku-1", Quantity: 1, UnitPriceCents: 999},
			wantErr: order.ErrInvalidState,
			errText: "1000 cents a unit",
		},
		{
			name:  "a free item is allowed",
			given: []order.Event{created},
			when:  order.AddItem{ProductID: "gift", Quantity: 1, UnitPriceCents: 0},
			then:  []order.Event{order.ItemAdded{ProductID: "gift", Quantity: 1, UnitPriceCents: 0}},
		},
		{
			name:    "the 501st distinct item is rejected",
			given:   many,
			when:    order.AddItem{ProductID: "one-more", Quantity: 1, UnitPriceCents: 1},
			wantErr: order.ErrInvalidState,
			errText: "limit is 500",
		},
		{
			name:  "with 500 items an existing product can still grow",
			given: many,
			when:  order.AddItem{ProductID: "p-7", Quantity: 1, UnitPriceCents: 1},
			then:  []order.Event{order.ItemAdded{ProductID: "p-7", Quantity: 1, UnitPriceCents: 1}},
		},
		{
			name:    "a line may not pass the quantity limit",
			given:   []order.Event{created, order.ItemAdded{ProductID: "a", Quantity: order.MaxQuantity, UnitPriceCents: 1}},
			when:    order.AddItem{ProductID: "a", Quantity: 1, UnitPriceCents: 1},
			wantErr: order.ErrInvalidState,
		},
		{
			name:    "a total that overflows int64 is rejected",
			given:   []order.Event{created, order.ItemAdded{ProductID: "a", Quantity: 1, UnitPriceCents: math.MaxInt64 - 10}},
			when:    order.AddItem{ProductID: "b", Quantity: 1, UnitPriceCents: 11},
			wantErr: order.ErrInvalidState,
			errText: "overflow",
		},
		{
			name:    "a line that overflows int64 is an invalid command",
			given:   []order.Event{created},
			when:    order.AddItem{ProductID: "b", Quantity: 2, UnitPriceCents: math.MaxInt64/2 + 1},
			wantErr: order.ErrInvalidCommand,
		},
		{
			name:    "removing a product that is not there is rejected",
			given:   []order.Event{created, added},
			when:    order.RemoveItem{ProductID: "nope"},
			wantErr: order.ErrInvalidState,
		},
		{
			name:  "submit totals the lines after removals",
			given: []order.Event{created, added, order.ItemAdded{ProductID: "b", Quantity: 3, UnitPriceCents: 7}, order.ItemAdded{ProductID: "c", Quantity: 1, UnitPriceCents: 5}, order.ItemRemoved{ProductID: "sku-1"}},
			when:  order.SubmitOrder{},
			then:  []order.Event{order.OrderSubmitted{TotalCents: 26, ItemCount: 2}},
		},
		{
			name:    "submit after removing the last item is rejected",
			given:   []order.Event{created, added, order.ItemRemoved{ProductID: "sku-1"}},
			when:    order.SubmitOrder{},
			wantErr: order.ErrInvalidState,
		},
		{
			name:    "paying less than the total is rejected",
			given:   []order.Event{created, added, submitted},
			when:    order.PayOrder{PaymentID: "p", AmountCents: 1999, Method: "card"},
			wantErr: order.ErrInvalidState,
			errText: "does not equal the order total 2000",
		},
		{
			name:    "paying more than the total is rejected",
			given:   []order.Event{created, added, submitted},
			when:    order.PayOrder{PaymentID: "p", AmountCents: 2001, Method: "card"},
			wantErr: order.ErrInvalidState,
		},
		{
			name:    "Decide validates commands built in code",
			given:   []order.Event{created},
			when:    order.AddItem{ProductID: "a.b", Quantity: 1},
			wantErr: order.ErrInvalidCommand,
		},
		{
			name:    "a canceled order cannot be canceled again",
			given:   []order.Event{created, canceledEvt},
			when:    order.CancelOrder{Reason: "again"},
			wantErr: order.ErrInvalidState,
			errText: "cannot cancel a canceled order",
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := order.Decide(order.Fold(order.New("ord-1"), tt.given...), tt.when)
			if tt.wantErr != nil {
				if !errors.Is(err, tt.wantErr) || got != nil {
					t.Fatalf("Decide = %v, %v; want error %v", got, err, tt.wantErr)
				}
				if !strings.Contains(err.Error(), tt.errText) {
					t.Fatalf("error %q does not mention %q", err, tt.errText)
				}
				return
			}
			if err != nil {
				t.Fatalf("Decide: %v", err)
			}
			if !reflect.DeepEqual(got, tt.then) {
				t.Fatalf("events = %#v\nwant %#v", got, tt.then)
			}
		})
	}
}

func TestEvolve(t *testing.T) {
	s := order.Fold(order.New("ord-1"), created,
		order.ItemAdded{ProductID: "a", Quantity: 2, UnitPriceCents: 150},
		order.ItemAdded{ProductID: "b", Quantity: 1, UnitPriceCents: 1000},
		order.ItemAdded{ProductID: "a", Quantity: 3, UnitPriceCents: 150},
	)
	want := order.State{
		ID: "ord-1", CustomerID: "cust-1", Currency: "USD", Status: order.StatusDraft,
		Items:      []order.Item{{ProductID: "a", Quantity: 5, UnitPriceCents: 150}, {ProductID: "b", Quantity: 1, UnitPriceCents: 1000}},
		TotalCents: 1750, Version: 4,
	}
	if !reflect.DeepEqual(s, want) {
		t.Fatalf("state = %+v\nwant %+v", s, want)
	}

	before := s
	after := order.Evolve(s, order.ItemRemoved{ProductID: "a"})
	after = order.Evolve(after, order.ItemAdded{ProductID: "b", Quantity: 1, UnitPriceCents: 1000})
	if !reflect.DeepEqual(before, want) {
		t.Fatalf("Evolve changed the state it was given: %+v", before)
	}
	if after.TotalCents != 2000 || len(after.Items) != 1 || after.Items[0].Quantity != 2 || after.Version != 6 {
		t.Fatalf("after remove and add: %+v", after)
	}

	s = order.Fold(s, order.OrderSubmitted{TotalCents: 1750, ItemCount: 2}, order.OrderPaid{PaymentID: "p", AmountCents: 1750, Method: "card"},
		order.OrderShipped{Shipment: order.Shipment{TrackingNumber: "T", Carrier: "DHL"}}, order.OrderDelivered{})
	if s.Status != order.StatusDelivered || s.PaymentID != "p" || s.PaidCents != 1750 || s.TrackingNumber != "T" || s.Carrier != "DHL" || s.Version != 8 {
		t.Fatalf("delivered state: %+v", s)
	}
}

// TestApplyEqualsEvolve pins the in-place fold to the pure one.
func TestApplyEqualsEvolve(t *testing.T) {
	events := []order.Event{created,
		order.ItemAdded{ProductID: "a", Quantity: 2, UnitPriceCents: 150},
		order.ItemAdded{ProductID: "b", Quantity: 1, UnitPriceCents: 1000},
		order.ItemAdded{ProductID: "a", Quantity: 3, UnitPriceCents: 150},
		order.ItemRemoved{ProductID: "a"},
		order.ItemAdded{ProductID: "c", Quantity: 7, UnitPriceCents: 3},
		order.OrderSubmitted{TotalCents: 1021, ItemCount: 2},
		order.OrderPaid{PaymentID: "p", AmountCents: 1021, Method: "card"},
		order.OrderShipped{Shipment: order.Shipment{TrackingNumber: "t", Carrier: "c"}},
		order.OrderDelivered{},
	}
	pure := order.New("ord-1")
	inPlace := order.New("ord-1")
	for i, e := range events {
		pure = order.Evolve(pure, e)
		inPlace.Apply(e)
		if !reflect.DeepEqual(pure, inPlace) {
			t.Fatalf("after event %d: Evolve %+v, Apply %+v", i, pure, inPlace)
		}
	}
}
