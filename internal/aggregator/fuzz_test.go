package aggregator

import (
	"errors"
	"strings"
	"testing"
	"unicode/utf8"

	"github.com/jetsource/jetsource/contract"
	"github.com/jetsource/jetsource/internal/order"
)

// FuzzParse feeds arbitrary subjects, ids and bodies to the command parser:
// it must never panic, must classify every rejection as invalid_command or
// unknown_command, must always name a result subject that cannot address
// anything but results, and must only accept commands that are valid.
// `go test` runs the seed corpus; `make fuzz` searches for more.
func FuzzParse(f *testing.F) {
	seeds := []struct{ subject, id, body string }{
		{"orders.commands.3.ord-1.AddItem", "cmd-1", `{"id":"cmd-1","type":"AddItem","orderId":"ord-1","data":{"productId":"sku-1","quantity":2,"unitPriceCents":1999},"metadata":{"userId":"u-7","correlationId":"c"}}`},
		{"orders.commands.0.o.CreateOrder", "c", `{"id":"c","type":"CreateOrder","orderId":"o","data":{"customerId":"x","currency":"EUR","items":[{"productId":"a","quantity":1,"unitPriceCents":0}]}}`},
		{"orders.commands.0.o.SubmitOrder", "c", `{"id":"c","type":"SubmitOrder","orderId":"o"}`},
		{"orders.commands.0.o.PayOrder", "c", `{"id":"c","type":"PayOrder","orderId":"o","data":{"paymentId":"p","amountCents":NaN,"method":"card"}}`},
		{"orders.commands.0.o.AddItem", "c", `{"id":"c","type":"AddItem","orderId":"o","data":{"productId":"a","quantity":1e400,"unitPriceCents":-0}}`},
		{"orders.commands.0.o.AddItem", "c", `{"id":"c","type":"AddItem","orderId":"o","data":{"productId":"a","quantity":Infinity,"unitPriceCents":1}}`},
		{"orders.commands.0.o.AddItem", "", `{"id":"c.>","type":"AddItem","orderId":"o"}`},
		{"orders.commands.0.o.AddItem", "c", `{"id":"c","type":"AddItem","orderId":"o","data":` + strings.Repeat("[", 5000) + `}`},
		{"orders.commands.0.o.AddItem", "c", "{\"id\":\"c\",\"type\":\"AddItem\",\"orderId\":\"o\",\"data\":{\"productId\":\"\xff\xfe\"}}"},
		{"orders.commands.0.o.CancelOrder", "c", `{"id":"c","type":"CancelOrder","orderId":"o","data":{"reason":"\u0000"}}`},
		{"orders.commands.x", "", ``},
		{"orders.commands.0.o.AddItem", "c", `null`},
		{"orders.commands.0.o.AddItem", "c", `{"id":"c","type":"AddItem","orderId":"o","data":{"productId":"a","quantity":"1","unitPriceCents":true}}`},
	}
	for _, s := range seeds {
		f.Add(s.subject, s.id, []byte(s.body))
	}
	f.Fuzz(func(t *testing.T, subject, headerID string, body []byte) {
		header := map[string][]string{}
		if headerID != "" {
			header["Nats-Msg-Id"] = []string{headerID}
		}
		in := parse(subject, header, body, 42)
		if !strings.HasPrefix(in.resultSubject, "orders.results.") || strings.ContainsAny(in.resultSubject[len("orders.results."):], "*> \t\r\n") {
			t.Fatalf("result subject %q could address other subjects", in.resultSubject)
		}
		if in.resultSubject != contract.UnaddressableResultSubject(42) && in.resultSubject != contract.ResultSubject(in.commandID) {
			t.Fatalf("result subject %q does not belong to command id %q", in.resultSubject, in.commandID)
		}
		if in.err != nil {
			if !errors.Is(in.err, order.ErrInvalidCommand) && !errors.Is(in.err, order.ErrUnknownCommand) {
				t.Fatalf("rejection %v is neither invalid_command nor unknown_command", in.err)
			}
			if !utf8.ValidString(in.err.Error()) && utf8.Valid(body) {
				t.Fatalf("error message is not valid UTF-8: %q", in.err)
			}
			return
		}
		if len(body) > contract.MaxBodyBytes || !utf8.Valid(body) {
			t.Fatal("accepted an oversize or non-UTF-8 body")
		}
		for field, id := range map[string]string{"id": in.env.ID, "orderId": in.env.OrderID} {
			if err := order.ValidateID(field, id); err != nil {
				t.Fatalf("accepted an invalid %s: %v", field, err)
			}
		}
		if in.cmd == nil || in.cmd.CommandType() != in.env.Type {
			t.Fatalf("accepted without a command of type %s", in.env.Type)
		}
		// Deciding a valid command never panics, on an empty or an open order.
		_, _ = order.Decide(order.New(in.env.OrderID), in.cmd)
		draft := order.Fold(order.New(in.env.OrderID), order.OrderCreated{CustomerID: "c", Currency: "USD"},
			order.ItemAdded{ProductID: "a", Quantity: 1, UnitPriceCents: 1})
		_, _ = order.Decide(draft, in.cmd)
	})
}
