package order_test

import (
	"encoding/json"
	"errors"
	"reflect"
	"strings"
	"testing"

	"github.com/jetsource/jetsource/internal/order"
)

func TestParseCommand(t *testing.T) {
	long := strings.Repeat("x", 129)
	tests := []struct {
		typ     string
		data    string
		want    order.Command
		wantErr error
		errText string
	}{
		{typ: "CreateOrder", data: `{"customerId":"c-1"}`, want: order.CreateOrder{CustomerID: "c-1"}},
		{typ: "CreateOrder", data: `{"customerId":"c-1","currency":"EUR","items":[{"productId":"a","quantity":1,"unitPriceCents":5}]}`,
			want: order.CreateOrder{CustomerID: "c-1", Currency: "EUR", Items: []order.AddItem{{ProductID: "a", Quantity: 1, UnitPriceCents: 5}}}},
		{typ: "AddItem", data: `{"productId":"sku-1","quantity":2,"unitPriceCents":1999}`, want: order.AddItem{ProductID: "sku-1", Quantity: 2, UnitPriceCents: 1999}},
		{typ: "SubmitOrder", data: ``, want: order.SubmitOrder{}},
		{typ: "SubmitOrder", data: `null`, want: order.SubmitOrder{}},
		{typ: "DeliverOrder", data: ` {} `, want: order.DeliverOrder{}},
		{typ: "PayOrder", data: `{"paymentId":"p-1","amountCents":0,"method":"voucher"}`, want: order.PayOrder{PaymentID: "p-1", Method: "voucher"}},
		{typ: "ShipOrder", data: `{"trackingNumber":"1Z 999","carrier":"UPS"}`, want: order.ShipOrder{TrackingNumber: "1Z 999", Carrier: "UPS"}},
		{typ: "CancelOrder", data: `{"reason":"zu teuer – später"}`, want: order.CancelOrder{Reason: "zu teuer – später"}},

		{typ: "Refund", data: `{}`, wantErr: order.ErrUnknownCommand, errText: `"Refund"`},
		{typ: "", data: `{}`, wantErr: order.ErrUnknownCommand},
		{typ: "createorder", data: `{}`, wantErr: order.ErrUnknownCommand},
		{typ: "AddItem", data: `{"productId":"a","quantity":1`, wantErr: order.ErrInvalidCommand, errText: "not valid JSON"},
		{typ: "AddItem", data: `[1,2]`, wantErr: order.ErrInvalidCommand, errText: "must be a JSON object"},
		{typ: "AddItem", data: `"a"`, wantErr: order.ErrInvalidCommand, errText: "must be a JSON object"},
		{typ: "AddItem", data: `{"productId":"a","quantity":1,"unitPriceCents":1} {}`, wantErr: order.ErrInvalidCommand, errText: "trailing"},
		{typ: "AddItem", data: `{"productId":"a","quantity":1,"unitPriceCents":1,"discount":5}`, wantErr: order.ErrInvalidCommand, errText: `unknown field "discount"`},
		{typ: "AddItem", data: `{"productId":"a","quantity":"2","unitPriceCents":1}`, wantErr: order.ErrInvalidCommand, errText: "quantity: must be an integer, got JSON string"},
		{typ: "AddItem", data: `{"productId":"a","quantity":1.5,"unitPriceCents":1}`, wantErr: order.ErrInvalidCommand, errText: "quantity"},
		{typ: "AddItem", data: `{"productId":"a","quantity":1e2,"unitPriceCents":1}`, wantErr: order.ErrInvalidCommand, errText: "quantity"},
		{typ: "AddItem", data: `{"productId":"a","quantity":1,"unitPriceCents":99999999999999999999}`, wantErr: order.ErrInvalidCommand, errText: "unitPriceCents"},
		{typ: "AddItem", data: `{"productId":"a","quantity":0,"unitPriceCents":1}`, wantErr: order.ErrInvalidCommand, errText: "between 1 and 1000000"},
		{typ: "AddItem", data: `{"productId":"a","quantity":1000001,"unitPriceCents":1}`, wantErr: order.ErrInvalidCommand},
		{typ: "AddItem", data: `{"productId":"a","quantity":-1,"unitPriceCents":1}`, wantErr: order.ErrInvalidCommand},
		{typ: "AddItem", data: `{"productId":"a","quantity":1,"unitPriceCents":-1}`, wantErr: order.ErrInvalidCommand, errText: "negative"},
		{typ: "AddItem", data: `{"quantity":1,"unitPriceCents":1}`, wantErr: order.ErrInvalidCommand, errText: "productId: is required"},
		{typ: "AddItem", data: `{"productId":"a","quantity":1}`, wantErr: order.ErrInvalidCommand, errText: "unitPriceCents: is required"},
		{typ: "AddItem", data: `{"productId":"a","quantity":1,"unitPriceCents":null}`, wantErr: order.ErrInvalidCommand, errText: "unitPriceCents: is required"},
		{typ: "AddItem", data: `{"productId":"a","unitPriceCents":0}`, wantErr: order.ErrInvalidCommand, errText: "quantity: is required"},
		{typ: "PayOrder", data: `{"paymentId":"p","method":"card"}`, wantErr: order.ErrInvalidCommand, errText: "amountCents: is required"},
		{typ: "CreateOrder", data: `{"customerId":"c","items":[{"productId":"a","quantity":1,"unitPriceCents":1},{"productId":"b","quantity":1}]}`, wantErr: order.ErrInvalidCommand, errText: "items[1].unitPriceCents: is required"},
		{typ: "AddItem", data: `{"productId":"a.b","quantity":1,"unitPriceCents":1}`, wantErr: order.ErrInvalidCommand, errText: `"."`},
		{typ: "AddItem", data: `{"productId":"a*","quantity":1,"unitPriceCents":1}`, wantErr: order.ErrInvalidCommand},
		{typ: "AddItem", data: `{"productId":">","quantity":1,"unitPriceCents":1}`, wantErr: order.ErrInvalidCommand},
		{typ: "AddItem", data: `{"productId":"a b","quantity":1,"unitPriceCents":1}`, wantErr: order.ErrInvalidCommand},
		{typ: "AddItem", data: `{"productId":"é","quantity":1,"unitPriceCents":1}`, wantErr: order.ErrInvalidCommand},
		{typ: "AddItem", data: `{"productId":"` + long + `","quantity":1,"unitPriceCents":1}`, wantErr: order.ErrInvalidCommand, errText: "limit is 128"},
		{typ: "CreateOrder", data: `{}`, wantErr: order.ErrInvalidCommand, errText: "customerId: is required"},
		{typ: "CreateOrder", data: `{"customerId":"c","currency":"usd"}`, wantErr: order.ErrInvalidCommand, errText: "ISO 4217"},
		{typ: "CreateOrder", data: `{"customerId":"c","currency":"ABC"}`, wantErr: order.ErrInvalidCommand, errText: "ISO 4217"},
		{typ: "CreateOrder", data: `{"customerId":"c","items":[{"productId":"a","quantity":0,"unitPriceCents":1}]}`, wantErr: order.ErrInvalidCommand, errText: "items[0]"},
		{typ: "CreateOrder", data: `{"customerId":"c","items":{}}`, wantErr: order.ErrInvalidCommand, errText: "items"},
		{typ: "PayOrder", data: `{"paymentId":"p","amountCents":1}`, wantErr: order.ErrInvalidCommand, errText: "method: is required"},
		{typ: "PayOrder", data: `{"paymentId":"p","amountCents":-5,"method":"card"}`, wantErr: order.ErrInvalidCommand},
		{typ: "ShipOrder", data: `{"trackingNumber":"   ","carrier":"UPS"}`, wantErr: order.ErrInvalidCommand, errText: "trackingNumber"},
		{typ: "ShipOrder", data: `{"trackingNumber":"a\u0000b","carrier":"UPS"}`, wantErr: order.ErrInvalidCommand, errText: "control character"},
		{typ: "CancelOrder", data: `{"reason":"` + strings.Repeat("ü", 501) + `"}`, wantErr: order.ErrInvalidCommand, errText: "limit is 500"},
		{typ: "CancelOrder", data: `{"reason":1}`, wantErr: order.ErrInvalidCommand, errText: "reason: must be a string"},
		{typ: "SubmitOrder", data: `{"force":true}`, wantErr: order.ErrInvalidCommand, errText: "unknown field"},
	}
	for _, tt := range tests {
		t.Run(tt.typ+" "+tt.data, func(t *testing.T) {
			got, err := order.ParseCommand(tt.typ, []byte(tt.data))
			if tt.wantErr != nil {
				if !errors.Is(err, tt.wantErr) {
					t.Fatalf("ParseCommand = %#v, %v; want %v", got, err, tt.wantErr)
				}
				if !strings.Contains(err.Error(), tt.errText) {
					t.Fatalf("error %q does not mention %q", err, tt.errText)
				}
				return
			}
			if err != nil {
				t.Fatalf("ParseCommand: %v", err)
			}
			if !reflect.DeepEqual(got, tt.want) {
				t.Fatalf("got %#v, want %#v", got, tt.want)
			}
		})
	}
}

// TestParseCommandReportsEveryProblem: one rejection names every problem of
// the command, each field once, and an unknown field comes with the fields
// the command takes.
func TestParseCommandReportsEveryProblem(t *testing.T) {
	for _, tt := range []struct {
		typ, data string
		want      []string
	}{
		{"AddItem", `{"qty":1}`, []string{`data: has an unknown field "qty"; AddItem takes productId, quantity, unitPriceCents`,
			"productId: is required", "quantity: is required", "unitPriceCents: is required"}},
		{"AddItem", `{"productId":"a.b","quantity":0,"unitPriceCents":-1}`, []string{`productId: has "." at byte 1`,
			"quantity: is 0; it must be between 1 and 1000000", "unitPriceCents: is -1; it must not be negative"}},
		{"PayOrder", `{"paymentId":7,"amountCents":"x","tip":1,"note":2}`, []string{`data: has unknown fields "note", "tip"; PayOrder takes paymentId, amountCents, method`,
			"paymentId: must be a string, got JSON number", "amountCents: must be an integer, got JSON string", "method: is required"}},
		{"CreateOrder", `{"customerId":"c","items":[{"productId":"a","qty":1,"unitPriceCents":1},{"productId":"b","quantity":"2","unitPriceCents":1},5]}`,
			[]string{`items[0]: has an unknown field "qty"; an item takes productId, quantity, unitPriceCents`, "items[0].quantity: is required",
				"items[1].quantity: must be an integer, got JSON string", "items[2]: must be an object"}},
		{"SubmitOrder", `{"force":true}`, []string{`data: has an unknown field "force"; SubmitOrder takes no data`}},
	} {
		_, err := order.ParseCommand(tt.typ, []byte(tt.data))
		if !errors.Is(err, order.ErrInvalidCommand) {
			t.Fatalf("%s %s: %v", tt.typ, tt.data, err)
		}
		got := strings.Split(err.Error(), "; ")
		msg := err.Error()
		for _, w := range tt.want {
			if !strings.Contains(msg, w) {
				t.Errorf("%s %s: %q does not say %q", tt.typ, tt.data, msg, w)
			}
		}
		var all order.FieldErrors
		if len(tt.want) > 1 && (!errors.As(err, &all) || len(all) != len(tt.want)) {
			t.Errorf("%s %s: %d problems, want %d: %q", tt.typ, tt.data, len(all), len(tt.want), got)
		}
	}
}

func TestParseEventRoundTrip(t *testing.T) {
	for _, e := range []order.Event{created, added, order.ItemRemoved{ProductID: "x"}, submitted, paid, shipped, delivered, canceledEvt} {
		data, err := json.Marshal(e)
		if err != nil {
			t.Fatal(err)
		}
		got, err := order.ParseEvent(e.EventType(), data)
		if err != nil {
			t.Fatalf("ParseEvent(%s): %v", e.EventType(), err)
		}
		if !reflect.DeepEqual(got, e) {
			t.Fatalf("round trip of %s: got %#v", e.EventType(), got)
		}
	}
	if _, err := order.ParseEvent("Nope", []byte(`{}`)); err == nil {
		t.Fatal("ParseEvent accepted an unknown type")
	}
}

func TestValidCurrency(t *testing.T) {
	for _, c := range []string{"USD", "EUR", "JPY", "CHF", "XOF"} {
		if !order.ValidCurrency(c) {
			t.Errorf("ValidCurrency(%q) = false", c)
		}
	}
	for _, c := range []string{"", "US", "usd", "USDX", "D A", "AED AFN", "ZZZ", "XAU"} {
		if order.ValidCurrency(c) {
			t.Errorf("ValidCurrency(%q) = true", c)
		}
	}
}
