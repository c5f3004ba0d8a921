package aggregator_test

import (
	"context"
	"encoding/json"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/nats-io/nats.go/jetstream"

	"github.com/jetsource/jetsource/contract"
	"github.com/jetsource/jetsource/internal/aggregator"
	"github.com/jetsource/jetsource/internal/es"
	"github.com/jetsource/jetsource/internal/order"
)

func TestOrderLifecycleOnTheWire(t *testing.T) {
	h := startHarness(t, aggregator.Config{})
	id := newID("ord")
	meta := map[string]any{"userId": "u-7", "correlationId": "corr-1"}
	steps := []cmd{
		{Type: "CreateOrder", Data: map[string]any{"customerId": "cust-1", "currency": "EUR"}},
		{Type: "AddItem", Data: map[string]any{"productId": "sku-1", "quantity": 2, "unitPriceCents": 1999}},
		{Type: "AddItem", Data: map[string]any{"productId": "sku-2", "quantity": 1, "unitPriceCents": 500}},
		{Type: "AddItem", Data: map[string]any{"productId": "sku-1", "quantity": 1, "unitPriceCents": 1999}},
		{Type: "RemoveItem", Data: map[string]any{"productId": "sku-2"}},
		{Type: "SubmitOrder"},
		{Type: "PayOrder", Data: map[string]any{"paymentId": "pay-1", "amountCents": 5997, "method": "card"}},
		{Type: "ShipOrder", Data: map[string]any{"trackingNumber": "1Z999", "carrier": "UPS"}},
		{Type: "DeliverOrder"},
	}
	var results []contract.Result
	for i, c := range steps {
		c.ID, c.OrderID, c.Metadata = newID("cmd"), id, meta
		r := accepted(t, h.send(c))
		if r.CommandID != c.ID || r.OrderID != id || r.Version != int64(i+1) || len(r.EventIDs) != 1 || r.StreamSequence == 0 {
			t.Fatalf("result of %s: %+v", c.Type, r)
		}
		results = append(results, r)
	}

	events := h.events(id)
	wantTypes := []string{"OrderCreated", "ItemAdded", "ItemAdded", "ItemAdded", "ItemRemoved", "OrderSubmitted", "OrderPaid", "OrderShipped", "OrderDelivered"}
	if len(events) != len(wantTypes) {
		t.Fatalf("%d events stored, want %d", len(events), len(wantTypes))
	}
	for i, e := range events {
		r := results[i]
		if e.Type != wantTypes[i] || e.Version != int64(i+1) || e.ID != r.EventIDs[0] || e.Sequence != r.StreamSequence ||
			e.AggregateType != "order" || e.AggregateID != id || e.SchemaVersion != contract.SchemaVersion(e.Type) ||
			e.Metadata.CausationID != r.CommandID || e.Metadata.UserID != "u-7" || e.Metadata.CorrelationID != "corr-1" ||
			time.Since(e.Metadata.Timestamp.Time) > time.Minute {
			t.Fatalf("event %d: %+v for result %+v", i, e, r)
		}
	}
	if got := string(events[5].Data); got != `{"totalCents":5997,"itemCount":1}` {
		t.Fatalf("OrderSubmitted data = %s", got)
	}
	if got := string(events[7].Data); events[7].SchemaVersion != 2 || got != `{"shipment":{"trackingNumber":"1Z999","carrier":"UPS"}}` {
		t.Fatalf("OrderShipped data = %s at schema version %d", got, events[7].SchemaVersion)
	}

	// Headers let subscribers route without decoding bodies.
	stream, err := h.js.Stream(context.Background(), contract.EventsStream)
	if err != nil {
		t.Fatal(err)
	}
	m, err := stream.GetMsg(context.Background(), events[1].Sequence)
	if err != nil {
		t.Fatal(err)
	}
	if m.Header.Get(jetstream.MsgIDHeader) != events[1].ID || m.Header.Get("Event-Type") != "ItemAdded" || m.Header.Get("Aggregate-Version") != "2" {
		t.Fatalf("event headers: %v", m.Header)
	}
	if m.Subject != contract.EventSubject(id, 16) {
		t.Fatalf("event stored on %s", m.Subject)
	}
	h.waitSettled()
}

func TestCreateOrderWithItemsIsOneAtomicAppend(t *testing.T) {
	h := startHarness(t, aggregator.Config{})
	id := newID("ord")
	var items []map[string]any
	for i := range 50 {
		items = append(items, map[string]any{"productId": fmt.Sprintf("sku-%d", i), "quantity": 1, "unitPriceCents": 100})
	}
	r := accepted(t, h.send(cmd{ID: newID("cmd"), Type: "CreateOrder", OrderID: id, Data: map[string]any{"customerId": "c", "items": items}}))
	if r.Version != 51 || len(r.EventIDs) != 51 {
		t.Fatalf("result %+v, want version 51 with 51 events", r)
	}
	events := h.events(id)
	if len(events) != 51 || events[50].Sequence != r.StreamSequence || events[0].Type != "OrderCreated" {
		t.Fatalf("stored %d events", len(events))
	}
}

func TestBadInputIsRejectedAndChangesNothing(t *testing.T) {
	h := startHarness(t, aggregator.Config{})
	existing := newID("ord")
	accepted(t, h.send(cmd{ID: newID("cmd"), Type: "CreateOrder", OrderID: existing, Data: map[string]any{"customerId": "c"}}))
	before := h.totalEvents()

	good := func(mut func(m map[string]any)) []byte {
		m := map[string]any{"id": "ID", "type": "AddItem", "orderId": existing,
			"data": map[string]any{"productId": "sku-1", "quantity": 1, "unitPriceCents": 100}}
		mut(m)
		b, _ := json.Marshal(m)
		return b
	}
	tests := []struct {
		name    string
		subject string
		body    func(id string) []byte
		noID    bool
		code    contract.Code
		mention string
	}{
		{name: "malformed JSON", body: func(id string) []byte { return []byte(`{"id":"` + id + `","type":"AddItem",`) }, code: contract.CodeInvalidCommand, mention: "envelope"},
		{name: "JSON array", body: func(string) []byte { return []byte(`[1,2,3]`) }, code: contract.CodeInvalidCommand},
		{name: "empty body", body: func(string) []byte { return nil }, code: contract.CodeInvalidCommand},
		{name: "invalid UTF-8", body: func(id string) []byte {
			return append([]byte(`{"id":"`+id+`","type":"AddItem","orderId":"`+existing+`","data":{"productId":"`), 0xff, 0xfe, '"', '}', '}')
		}, code: contract.CodeInvalidCommand, mention: "UTF-8"},
		{name: "oversize body", body: func(id string) []byte {
			return good(func(m map[string]any) {
				m["id"] = id
				// Above the body limit, below the stream's message size
				// limit (es.CommandMaxMsgSize), which refuses larger ones.
				m["metadata"] = map[string]any{"userId": strings.Repeat("x", 66_000)}
			})
		}, code: contract.CodeInvalidCommand, mention: "limit is 65536"},
		{name: "a 60 KB command type (JSON-escaped control characters)", body: func(id string) []byte {
			return good(func(m map[string]any) { m["id"] = id; m["type"] = strings.Repeat("\x01", 10_000) })
		}, code: contract.CodeInvalidCommand, mention: "(clipped)"},
		{name: "a 60 KB order id (JSON-escaped control characters)", body: func(id string) []byte {
			return good(func(m map[string]any) { m["id"] = id; m["orderId"] = strings.Repeat("\x01", 10_000) })
		}, code: contract.CodeInvalidCommand, mention: "orderId"},
		{name: "unknown command", subject: contract.CommandSubject(existing, "Refund"), body: func(id string) []byte {
			return good(func(m map[string]any) { m["id"] = id; m["type"] = "Refund" })
		}, code: contract.CodeUnknownCommand, mention: "Refund"},
		{name: "subject type differs from body", subject: contract.CommandSubject(existing, "RemoveItem"), body: func(id string) []byte {
			return good(func(m map[string]any) { m["id"] = id })
		}, code: contract.CodeInvalidCommand, mention: "does not match"},
		{name: "subject order differs from body", subject: contract.CommandSubject("someone-else", "AddItem"), body: func(id string) []byte {
			return good(func(m map[string]any) { m["id"] = id })
		}, code: contract.CodeInvalidCommand, mention: "does not match"},
		{name: "order id with a space", body: func(id string) []byte {
			return good(func(m map[string]any) { m["id"] = id; m["orderId"] = "ord 1" })
		}, code: contract.CodeInvalidCommand, mention: "orderId"},
		{name: "order id with a wildcard", subject: contract.CommandSubject("ord-x", "AddItem"), body: func(id string) []byte {
			return good(func(m map[string]any) { m["id"] = id; m["orderId"] = "ord-*" })
		}, code: contract.CodeInvalidCommand, mention: "orderId"},
		{name: "product id with a dot", body: func(id string) []byte {
			return good(func(m map[string]any) {
				m["id"] = id
				m["data"] = map[string]any{"productId": "a.b", "quantity": 1, "unitPriceCents": 1}
			})
		}, code: contract.CodeInvalidCommand, mention: "productId"},
		{name: "deeply nested JSON", body: func(id string) []byte {
			return []byte(`{"id":"` + id + `","type":"AddItem","orderId":"` + existing + `","data":` + strings.Repeat(`{"a":`, 10_500) + `1` + strings.Repeat(`}`, 10_500) + `}`)
		}, code: contract.CodeInvalidCommand},
		{name: "NaN", body: func(id string) []byte {
			return []byte(`{"id":"` + id + `","type":"AddItem","orderId":"` + existing + `","data":{"productId":"a","quantity":NaN,"unitPriceCents":1}}`)
		}, code: contract.CodeInvalidCommand, mention: "invalid character"},
		{name: "Infinity", body: func(id string) []byte {
			return []byte(`{"id":"` + id + `","type":"AddItem","orderId":"` + existing + `","data":{"productId":"a","quantity":1,"unitPriceCents":Infinity}}`)
		}, code: contract.CodeInvalidCommand},
		{name: "number beyond 64 bits", body: func(id string) []byte {
			return []byte(`{"id":"` + id + `","type":"AddItem","orderId":"` + existing + `","data":{"productId":"a","quantity":1,"unitPriceCents":1e400}}`)
		}, code: contract.CodeInvalidCommand, mention: "unitPriceCents"},
		{name: "hexadecimal number", body: func(id string) []byte {
			return []byte(`{"id":"` + id + `","type":"AddItem","orderId":"` + existing + `","data":{"productId":"a","quantity":0x10,"unitPriceCents":1}}`)
		}, code: contract.CodeInvalidCommand},
		{name: "negative zero quantity", body: func(id string) []byte {
			return []byte(`{"id":"` + id + `","type":"AddItem","orderId":"` + existing + `","data":{"productId":"a","quantity":-0,"unitPriceCents":1}}`)
		}, code: contract.CodeInvalidCommand, mention: "quantity"},
		{name: "subject injection in the product id", body: func(id string) []byte {
			return good(func(m map[string]any) {
				m["id"] = id
				m["data"] = map[string]any{"productId": "x.>", "quantity": 1, "unitPriceCents": 1}
			})
		}, code: contract.CodeInvalidCommand, mention: "productId"},
		{name: "subject injection in the customer id", subject: contract.CommandSubject(existing, "CreateOrder"), body: func(id string) []byte {
			return good(func(m map[string]any) {
				m["id"] = id
				m["type"] = "CreateOrder"
				m["data"] = map[string]any{"customerId": "c\r\nPUB x 1"}
			})
		}, code: contract.CodeInvalidCommand, mention: "customerId"},
		{name: "missing field", body: func(id string) []byte {
			return good(func(m map[string]any) { m["id"] = id; m["data"] = map[string]any{"productId": "a", "quantity": 1} })
		}, code: contract.CodeInvalidCommand},
		{name: "wrong type", body: func(id string) []byte {
			return good(func(m map[string]any) {
				m["id"] = id
				m["data"] = map[string]any{"productId": "a", "quantity": "2", "unitPriceCents": 1}
			})
		}, code: contract.CodeInvalidCommand, mention: "quantity"},
		{name: "unknown envelope field", body: func(id string) []byte {
			return good(func(m map[string]any) { m["id"] = id; m["expectedVersion"] = 3 })
		}, code: contract.CodeInvalidCommand, mention: "expectedVersion"},
		{name: "header id differs from body id", body: func(id string) []byte {
			return good(func(m map[string]any) { m["id"] = id + "-other" })
		}, code: contract.CodeInvalidCommand, mention: "Nats-Msg-Id"},
		{name: "command id with a dot and no header", noID: true, body: func(string) []byte {
			return good(func(m map[string]any) { m["id"] = "cmd.1" })
		}, code: contract.CodeInvalidCommand, mention: "id"},
		{name: "no command id at all", noID: true, body: func(string) []byte {
			return good(func(m map[string]any) { delete(m, "id") })
		}, code: contract.CodeInvalidCommand, mention: "id: is required"},
		{name: "command on a missing order", subject: contract.CommandSubject("no-such-order", "AddItem"), body: func(id string) []byte {
			return good(func(m map[string]any) { m["id"] = id; m["orderId"] = "no-such-order" })
		}, code: contract.CodeNotFound},
		{name: "command in the wrong state", subject: contract.CommandSubject(existing, "PayOrder"), body: func(id string) []byte {
			return good(func(m map[string]any) {
				m["id"] = id
				m["type"] = "PayOrder"
				m["data"] = map[string]any{"paymentId": "p", "amountCents": 0, "method": "card"}
			})
		}, code: contract.CodeInvalidState, mention: "cannot pay a draft order"},
		{name: "create an existing order", subject: contract.CommandSubject(existing, "CreateOrder"), body: func(id string) []byte {
			return good(func(m map[string]any) {
				m["id"] = id
				m["type"] = "CreateOrder"
				m["data"] = map[string]any{"customerId": "c"}
			})
		}, code: contract.CodeAlreadyExists},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			id := newID("bad")
			subject := tt.subject
			if subject == "" {
				subject = contract.CommandSubject(existing, "AddItem")
			}
			msgID := id
			if tt.noID {
				msgID = ""
			}
			r := h.sendRaw(subject, msgID, tt.body(id))
			rejectedWith(t, r, tt.code)
			if !strings.Contains(r.Error.Message, tt.mention) {
				t.Fatalf("message %q does not mention %q", r.Error.Message, tt.mention)
			}
			if len(r.Error.Message) > 1024 || len(r.OrderID) > 128 {
				t.Fatalf("result echoes too much: a %d-byte message, a %d-byte order id", len(r.Error.Message), len(r.OrderID))
			}
		})
	}
	if after := h.totalEvents(); after != before {
		t.Fatalf("bad input appended %d events", after-before)
	}
	h.waitSettled()
	// The order still takes good commands.
	accepted(t, h.send(cmd{ID: newID("cmd"), Type: "AddItem", OrderID: existing, Data: map[string]any{"productId": "sku-1", "quantity": 1, "unitPriceCents": 1}}))
}

func TestResendingACommandReturnsItsFirstOutcome(t *testing.T) {
	count := &counter{}
	h := startHarness(t, aggregator.Config{Observer: count})
	id := newID("ord")
	create := cmd{ID: newID("cmd"), Type: "CreateOrder", OrderID: id, Data: map[string]any{"customerId": "c"}}
	first := accepted(t, h.send(create))
	rejectedCmd := cmd{ID: newID("cmd"), Type: "SubmitOrder", OrderID: id}
	firstRejection := h.send(rejectedCmd)
	rejectedWith(t, firstRejection, contract.CodeInvalidState)
	accepted(t, h.send(cmd{ID: newID("cmd"), Type: "AddItem", OrderID: id, Data: map[string]any{"productId": "a", "quantity": 1, "unitPriceCents": 1}}))
	stored := h.totalEvents()

	resend := func(c cmd) contract.Result {
		// Without Nats-Msg-Id JetStream cannot deduplicate it, as after the
		// duplicate window: the aggregator must, and says it replayed.
		before := count.replayed.Load()
		body, _ := json.Marshal(c)
		h.publish(contract.CommandSubject(c.OrderID, c.Type), "", body)
		waitCount(t, &count.replayed, before+1, "replayed outcomes")
		return h.waitResult(contract.ResultSubject(c.ID))
	}
	if again := resend(create); again.Status != contract.StatusAccepted || again.StreamSequence != first.StreamSequence || again.EventIDs[0] != first.EventIDs[0] {
		t.Fatalf("re-sent create: %+v, first %+v", again, first)
	}
	// The rejected SubmitOrder would now be accepted; its first outcome stands.
	rejectedWith(t, resend(rejectedCmd), contract.CodeInvalidState)

	// After a restart (cold cache) and after the results stream forgot it,
	// the causation ids of the stored events prove the command was applied.
	h.stop()
	resultsStream, err := h.js.Stream(context.Background(), contract.ResultsStream)
	if err != nil {
		t.Fatal(err)
	}
	if err := resultsStream.Purge(context.Background(), jetstream.WithPurgeSubject(contract.ResultSubject(create.ID))); err != nil {
		t.Fatal(err)
	}
	h.stop = h.run(aggregator.Config{Observer: count})
	if again := resend(create); again.Status != contract.StatusAccepted || again.StreamSequence != first.StreamSequence || again.EventIDs[0] != first.EventIDs[0] || again.Version != 1 {
		t.Fatalf("re-sent create after restart and expiry: %+v, first %+v", again, first)
	}
	if h.totalEvents() != stored {
		t.Fatalf("re-sent commands appended %d events", h.totalEvents()-stored)
	}
}

func TestCommandsOfOneOrderApplyInPublishOrder(t *testing.T) {
	h := startHarness(t, aggregator.Config{})
	id := newID("ord")
	accepted(t, h.send(cmd{ID: newID("cmd"), Type: "CreateOrder", OrderID: id, Data: map[string]any{"customerId": "c"}}))
	const n = 200
	var last string
	for i := range n {
		last = newID("cmd")
		body, _ := json.Marshal(cmd{ID: last, Type: "AddItem", OrderID: id, Data: map[string]any{"productId": fmt.Sprintf("p-%03d", i), "quantity": 1, "unitPriceCents": 1}})
		h.publish(contract.CommandSubject(id, "AddItem"), last, body)
	}
	r := accepted(t, h.waitResult(contract.ResultSubject(last)))
	if r.Version != n+1 {
		t.Fatalf("last command at version %d, want %d", r.Version, n+1)
	}
	for i, e := range h.events(id)[1:] {
		var d order.ItemAdded
		if err := json.Unmarshal(e.Data, &d); err != nil {
			t.Fatal(err)
		}
		if want := fmt.Sprintf("p-%03d", i); d.ProductID != want {
			t.Fatalf("event %d adds %s, want %s: commands applied out of order", i+2, d.ProductID, want)
		}
	}
}

func TestForeignAppendIsSeenBeforeDeciding(t *testing.T) {
	h := startHarness(t, aggregator.Config{})
	id := newID("ord")
	accepted(t, h.send(cmd{ID: newID("cmd"), Type: "CreateOrder", OrderID: id, Data: map[string]any{"customerId": "c"}}))
	// Another writer appends behind the aggregator's cached state (as a
	// previous owner of the partition could during a handover).
	foreignAppend := func(version int64, data string) {
		evs := h.events(id)
		e := contract.Event{ID: es.NewEventID(time.Now()), AggregateType: "order", AggregateID: id, Type: "ItemAdded", SchemaVersion: 1, Version: version,
			Data: json.RawMessage(data), Metadata: contract.EventMetadata{CausationID: "foreign", Timestamp: contract.Time{Time: time.Now()}}}
		if _, err := h.store.Append(context.Background(), id, evs[len(evs)-1].Sequence, []contract.Event{e}); err != nil {
			t.Fatal(err)
		}
	}

	// An accepted command conflicts, reloads and lands after it.
	foreignAppend(2, `{"productId":"x","quantity":1,"unitPriceCents":7}`)
	r := accepted(t, h.send(cmd{ID: newID("cmd"), Type: "AddItem", OrderID: id, Data: map[string]any{"productId": "y", "quantity": 1, "unitPriceCents": 3}}))
	if r.Version != 3 {
		t.Fatalf("add after a foreign append landed at version %d, want 3", r.Version)
	}
	// A rejection is never decided on a stale cache: RemoveItem of the
	// foreign product would be rejected on the cached state.
	foreignAppend(4, `{"productId":"z","quantity":1,"unitPriceCents":5}`)
	accepted(t, h.send(cmd{ID: newID("cmd"), Type: "RemoveItem", OrderID: id, Data: map[string]any{"productId": "z"}}))
	r = accepted(t, h.send(cmd{ID: newID("cmd"), Type: "SubmitOrder", OrderID: id}))
	var submitted order.OrderSubmitted
	if err := json.Unmarshal(h.events(id)[r.Version-1].Data, &submitted); err != nil || submitted.TotalCents != 10 || submitted.ItemCount != 2 {
		t.Fatalf("submitted %+v (%v), want total 10 over 2 items", submitted, err)
	}
}

func TestShutdownDrainsAndRestartResumes(t *testing.T) {
	h := startHarness(t, aggregator.Config{})
	id := newID("ord")
	accepted(t, h.send(cmd{ID: newID("cmd"), Type: "CreateOrder", OrderID: id, Data: map[string]any{"customerId": "c"}}))
	h.stop()
	var ids []string
	for i := range 20 {
		c := cmd{ID: newID("cmd"), Type: "AddItem", OrderID: id, Data: map[string]any{"productId": fmt.Sprintf("p%d", i), "quantity": 1, "unitPriceCents": 1}}
		body, _ := json.Marshal(c)
		h.publish(contract.CommandSubject(id, "AddItem"), c.ID, body)
		ids = append(ids, c.ID)
	}
	if _, err := h.lookup(contract.ResultSubject(ids[0]), 300*time.Millisecond); err == nil {
		t.Fatal("a stopped aggregator produced a result")
	}
	h.stop = h.run(aggregator.Config{})
	for i, cid := range ids {
		if r := accepted(t, h.waitResult(contract.ResultSubject(cid))); r.Version != int64(i+2) {
			t.Fatalf("command %d at version %d", i, r.Version)
		}
	}
}
