package query_test

import (
	"context"
	"encoding/json"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"github.com/nats-io/nats.go/micro"

	"github.com/jetsource/jetsource/client"
	"github.com/jetsource/jetsource/contract"
	"github.com/jetsource/jetsource/internal/es"
	"github.com/jetsource/jetsource/internal/natstest"
	"github.com/jetsource/jetsource/internal/servicetest"
)

// The tests talk to the service as the stock nats CLI does: `nats req`
// sends the JSON body and prints the reply or the micro error headers;
// `nats micro ls|info|stats` request $SRV.PING|INFO|STATS.

// env is a NATS server with the streams, an aggregator, the query service
// and a client to make orders with.
type env struct {
	nc     *nats.Conn
	js     jetstream.JetStream
	client *client.Client
	url    string
}

func newEnv(t *testing.T) *env {
	t.Helper()
	srv, nc, js := natstest.Streams(t, natstest.Partitions)
	servicetest.Aggregator(t, srv.ClientURL())
	servicetest.Query(t, srv.ClientURL())
	c, err := client.New(nc)
	if err != nil {
		t.Fatal(err)
	}
	return &env{nc: nc, js: js, client: c, url: srv.ClientURL()}
}

// send sends commands to an order and returns their results.
func (e *env) send(t *testing.T, orderID string, cmds ...contract.Command) []contract.Result {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	var out []contract.Result
	for _, c := range cmds {
		r, err := e.client.Send(ctx, client.NewEnvelope(orderID, c))
		if err != nil {
			t.Fatalf("%s %s: %v", orderID, c.CommandType(), err)
		}
		out = append(out, r)
	}
	return out
}

// reply is what `nats req` shows: the body, or the micro error.
type reply struct {
	body      []byte
	errorCode string
	errorText string
}

func (e *env) request(t *testing.T, subject, body string) reply {
	t.Helper()
	m, err := e.nc.Request(subject, []byte(body), 5*time.Second)
	if err != nil {
		t.Fatalf("request %s %s: %v", subject, body, err)
	}
	return reply{body: m.Data, errorCode: m.Header.Get(contract.QueryErrorCodeHeader), errorText: m.Header.Get(contract.QueryErrorHeader)}
}

func (e *env) state(t *testing.T, body string) contract.OrderState {
	t.Helper()
	r := e.request(t, contract.QueryStateSubject, body)
	var s contract.OrderState
	if r.errorCode != "" || json.Unmarshal(r.body, &s) != nil {
		t.Fatalf("state %s: error %s %q, body %s", body, r.errorCode, r.errorText, r.body)
	}
	return s
}

func TestStateNowAtAVersionAndAtATime(t *testing.T) {
	e := newEnv(t)
	e.send(t, "ord-1", contract.CreateOrder{CustomerID: "c-1", Currency: "EUR"},
		contract.AddItem{ProductID: "sku-1", Quantity: 2, UnitPriceCents: 1999},
		contract.SubmitOrder{})

	now := e.state(t, `{"orderId":"ord-1"}`)
	want := contract.OrderState{ID: "ord-1", CustomerID: "c-1", Currency: "EUR", Status: "submitted",
		Items: []contract.OrderItem{{ProductID: "sku-1", Quantity: 2, UnitPriceCents: 1999}}, TotalCents: 3998, Version: 3}
	if fmt.Sprint(now) != fmt.Sprint(want) {
		t.Fatalf("state now: %+v, want %+v", now, want)
	}
	if v1 := e.state(t, `{"orderId":"ord-1","version":1}`); v1.Version != 1 || v1.Status != "draft" || len(v1.Items) != 0 {
		t.Fatalf("state at version 1: %+v", v1)
	}
	history := e.history(t, `{"orderId":"ord-1"}`)
	added := history.Events[1].Metadata.Timestamp
	at := e.state(t, fmt.Sprintf(`{"orderId":"ord-1","at":%q}`, added.Format(time.RFC3339Nano)))
	if at.Version != 2 || at.Status != "draft" || at.TotalCents != 3998 {
		t.Fatalf("state at %s, when the item was added: %+v", added, at)
	}
	later := e.state(t, fmt.Sprintf(`{"orderId":"ord-1","at":%q}`, time.Now().Add(time.Hour).Format(time.RFC3339)))
	if later.Version != 3 {
		t.Fatalf("state an hour from now: %+v", later)
	}
}

func TestRequestsThatFailSayWhy(t *testing.T) {
	e := newEnv(t)
	r := e.send(t, "ord-1", contract.CreateOrder{CustomerID: "c-1"}, contract.AddItem{ProductID: "p", Quantity: 1, UnitPriceCents: 1})
	created := e.history(t, `{"orderId":"ord-1"}`).Events[0].Metadata.Timestamp
	before := created.Add(-time.Minute).Format(time.RFC3339)
	// A history this build cannot read: an event type it does not know.
	teleported := contract.Event{ID: es.NewEventID(time.Now()), AggregateType: "order", AggregateID: "ord-2", Type: "OrderTeleported",
		SchemaVersion: 1, Version: 1, Data: json.RawMessage(`{}`), Metadata: contract.EventMetadata{Timestamp: contract.Time{Time: time.Now()}}}
	if _, err := es.NewStore(e.js, natstest.Partitions).Append(context.Background(), "ord-2", 0, []contract.Event{teleported}); err != nil {
		t.Fatal(err)
	}

	for _, c := range []struct {
		subject, body, code, says string
	}{
		{contract.QueryStateSubject, `{"orderId":"ord-never"}`, "404", "no such order ord-never"},
		{contract.QueryStateSubject, `{"orderId":"ord-1","version":5}`, "404", "order ord-1 is at version 2; it has no version 5"},
		{contract.QueryStateSubject, fmt.Sprintf(`{"orderId":"ord-1","at":%q}`, before), "404", "did not exist at"},
		{contract.QueryStateSubject, `{"orderId":"ord-never","at":"2026-11-23T10:00:00Z"}`, "404", "no such order ord-never"},
		{contract.QueryStateSubject, `{"orderId":"ord-1","version":1,"at":"2026-11-23T10:00:00Z"}`, "400", "give version or at, not both"},
		{contract.QueryStateSubject, `{"orderId":"ord-1","version":-1}`, "400", "at least 1"},
		{contract.QueryStateSubject, `{"orderId":"ord-1","at":"yesterday"}`, "400", "timestamp"},
		{contract.QueryStateSubject, `{"orderId":"ord.*"}`, "400", "orderId"},
		{contract.QueryStateSubject, `{"orderId":"ord-1","versoin":1}`, "400", `unknown field "versoin"`},
		{contract.QueryStateSubject, `{"orderId":`, "400", "not a valid query"},
		{contract.QueryStateSubject, ``, "400", "the request is empty"},
		{contract.QueryStateSubject, `{"orderId":"ord-2"}`, "500", "corrupt"},
		{contract.QueryHistorySubject, `{"orderId":"ord-never"}`, "404", "no such order ord-never"},
		{contract.QueryHistorySubject, `{"orderId":"ord-1","limit":501}`, "400", "limit is 501; it must be 1 to 500"},
		{contract.QueryHistorySubject, `{"orderId":"ord-1","afterVersion":-1}`, "400", "must not be negative"},
	} {
		got := e.request(t, c.subject, c.body)
		if got.errorCode != c.code || !strings.Contains(got.errorText, c.says) || len(got.body) != 0 {
			t.Errorf("%s %s: error %s %q (body %s), want %s saying %q", c.subject, c.body, got.errorCode, got.errorText, got.body, c.code, c.says)
		}
	}
	if s := e.state(t, `{"orderId":"ord-1","version":2}`); s.Version != r[1].Version {
		t.Errorf("the last version itself: %+v", s)
	}
}

func (e *env) history(t *testing.T, body string) contract.History {
	t.Helper()
	r := e.request(t, contract.QueryHistorySubject, body)
	var h contract.History
	if r.errorCode != "" || json.Unmarshal(r.body, &h) != nil {
		t.Fatalf("history %s: error %s %q, body %s", body, r.errorCode, r.errorText, r.body)
	}
	return h
}

func TestHistoryPagesThroughEventsUpcast(t *testing.T) {
	e := newEnv(t)
	// An order shipped at OrderShipped schema version 1.
	var v1 []contract.Event
	for i, ev := range [][2]string{
		{contract.TypeOrderCreated, `{"customerId":"c","currency":"EUR"}`},
		{contract.TypeItemAdded, `{"productId":"p","quantity":1,"unitPriceCents":5}`},
		{contract.TypeOrderSubmitted, `{"totalCents":5,"itemCount":1}`},
		{contract.TypeOrderPaid, `{"paymentId":"pay","amountCents":5,"method":"card"}`},
		{contract.TypeOrderShipped, `{"trackingNumber":"1Z999","carrier":"UPS"}`},
	} {
		v1 = append(v1, contract.Event{ID: es.NewEventID(time.Now()), AggregateType: "order", AggregateID: "ord-1", Type: ev[0],
			SchemaVersion: 1, Version: int64(i + 1), Data: json.RawMessage(ev[1]), Metadata: contract.EventMetadata{Timestamp: contract.Time{Time: time.Now()}}})
	}
	if _, err := es.NewStore(e.js, natstest.Partitions).Append(context.Background(), "ord-1", 0, v1); err != nil {
		t.Fatal(err)
	}
	e.send(t, "ord-1", contract.DeliverOrder{})

	var versions []int64
	pages := 0
	for after, more := int64(0), true; more; pages++ {
		h := e.history(t, fmt.Sprintf(`{"orderId":"ord-1","afterVersion":%d,"limit":4}`, after))
		for _, ev := range h.Events {
			versions = append(versions, ev.Version)
			if ev.Type == contract.TypeOrderShipped && (ev.SchemaVersion != 2 || string(ev.Data) != `{"shipment":{"trackingNumber":"1Z999","carrier":"UPS"}}`) {
				t.Errorf("OrderShipped stored at version 1 reads as schema version %d %s", ev.SchemaVersion, ev.Data)
			}
		}
		after, more = h.Events[len(h.Events)-1].Version, h.More
	}
	if pages != 2 || fmt.Sprint(versions) != "[1 2 3 4 5 6]" {
		t.Fatalf("%d pages of versions %v", pages, versions)
	}
	if h := e.history(t, `{"orderId":"ord-1","afterVersion":6}`); len(h.Events) != 0 || h.More {
		t.Fatalf("after the last version: %+v", h)
	}
	if raw := e.request(t, contract.QueryHistorySubject, `{"orderId":"ord-1","afterVersion":9}`); string(raw.body) != `{"events":[],"more":false}` {
		t.Fatalf("past the end: %s", raw.body)
	}
	if s := e.state(t, `{"orderId":"ord-1"}`); s.Status != "delivered" || s.Carrier != "UPS" || s.TrackingNumber != "1Z999" {
		t.Fatalf("state of the order shipped at version 1: %+v", s)
	}
}

// TestDiscovery is `nats micro ls`, `info` and `stats`: two replicas answer
// PING, INFO names both endpoints and their subjects, STATS counts the
// requests and errors each replica answered.
func TestDiscovery(t *testing.T) {
	e := newEnv(t)
	servicetest.Query(t, e.url) // a second replica
	e.send(t, "ord-1", contract.CreateOrder{CustomerID: "c"})
	for range 3 {
		e.state(t, `{"orderId":"ord-1"}`)
	}
	e.request(t, contract.QueryStateSubject, `{"orderId":"ord-never"}`)

	pings := e.collect(t, "$SRV.PING."+contract.QueryService, 2)
	ids := map[string]bool{}
	for _, p := range pings {
		var ping micro.Ping
		if err := json.Unmarshal(p, &ping); err != nil || ping.Type != micro.PingResponseType || ping.Name != contract.QueryService || ping.Version != contract.QueryServiceVersion {
			t.Fatalf("ping: %s (%v)", p, err)
		}
		ids[ping.ID] = true
	}
	if len(ids) != 2 {
		t.Fatalf("PING answered by %d instances, want 2", len(ids))
	}

	var info micro.Info
	if err := json.Unmarshal(e.collect(t, "$SRV.INFO."+contract.QueryService, 2)[0], &info); err != nil {
		t.Fatal(err)
	}
	subjects := map[string]string{}
	for _, ep := range info.Endpoints {
		subjects[ep.Name] = ep.Subject
	}
	if info.Description == "" || subjects["state"] != contract.QueryStateSubject || subjects["history"] != contract.QueryHistorySubject || len(subjects) != 2 {
		t.Fatalf("info: %+v", info)
	}

	requests, errs := 0, 0
	for _, raw := range e.collect(t, "$SRV.STATS."+contract.QueryService, 2) {
		var stats micro.Stats
		if err := json.Unmarshal(raw, &stats); err != nil || stats.Type != micro.StatsResponseType {
			t.Fatalf("stats: %s (%v)", raw, err)
		}
		for _, ep := range stats.Endpoints {
			requests += ep.NumRequests
			errs += ep.NumErrors
		}
	}
	if requests != 4 || errs != 1 {
		t.Fatalf("stats count %d requests and %d errors, want 4 and 1", requests, errs)
	}
}

// collect gathers n replies to a request, as `nats micro` does for all
// instances.
func (e *env) collect(t *testing.T, subject string, n int) [][]byte {
	t.Helper()
	inbox := e.nc.NewRespInbox()
	sub, err := e.nc.SubscribeSync(inbox)
	if err != nil {
		t.Fatal(err)
	}
	defer func() { _ = sub.Unsubscribe() }()
	if err := e.nc.PublishRequest(subject, inbox, nil); err != nil {
		t.Fatal(err)
	}
	var out [][]byte
	for len(out) < n {
		m, err := sub.NextMsg(5 * time.Second)
		if err != nil {
			t.Fatalf("%s: %d of %d replies: %v", subject, len(out), n, err)
		}
		out = append(out, m.Data)
	}
	return out
}
