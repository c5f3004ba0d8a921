// Package docs_test keeps the machine-readable contract in step with the
// code: asyncapi.yaml must name exactly the command types, event types and
// versions, statuses and error codes of package contract, and its payload
// schemas must accept every message the services produce and reject the bad
// commands they reject, wherever a schema can say why.
package docs_test

import (
	"bytes"
	"cmp"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"maps"
	"os"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/jackc/pgx/v5/pgxpool"
	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"github.com/santhosh-tekuri/jsonschema/v6"
	"github.com/synadia-io/orbit.go/jetstreamext"
	"sigs.k8s.io/yaml"

	"github.com/jetsource/jetsource/client"
	"github.com/jetsource/jetsource/client/readmodel"
	"github.com/jetsource/jetsource/contract"
	"github.com/jetsource/jetsource/internal/aggregator"
	"github.com/jetsource/jetsource/internal/es"
	"github.com/jetsource/jetsource/internal/natstest"
	"github.com/jetsource/jetsource/internal/pgtest"
	"github.com/jetsource/jetsource/internal/projections"
	"github.com/jetsource/jetsource/internal/projections/migrations"
	projection "github.com/jetsource/jetsource/internal/projections/readmodel"
	"github.com/jetsource/jetsource/internal/servicetest"
	"github.com/jetsource/jetsource/internal/workload"
)

var cluster *pgtest.Cluster

func TestMain(m *testing.M) { pgtest.Main(m, &cluster) }

// codes lists every error code of the contract.
var codes = []contract.Code{contract.CodeInvalidCommand, contract.CodeUnknownCommand, contract.CodeNotFound,
	contract.CodeAlreadyExists, contract.CodeInvalidState, contract.CodeConflict, contract.CodeInternal}

// asyncAPI is the part of asyncapi.yaml whose names the test compares.
type asyncAPI struct {
	Channels map[string]struct {
		Address    *string `json:"address"`
		Parameters map[string]struct {
			Enum []string `json:"enum"`
		} `json:"parameters"`
		Messages map[string]any `json:"messages"`
	} `json:"channels"`
	Components struct {
		Schemas map[string]struct {
			Enum []string `json:"enum"`
		} `json:"schemas"`
	} `json:"components"`
}

// schemas are the compiled payload schemas of asyncapi.yaml.
type schemas struct {
	command, event, eventHeaders, result, snapshot *jsonschema.Schema
	// The orders-query requests, replies and error headers.
	stateQuery, orderState, historyQuery, history, queryError *jsonschema.Schema
	// named holds the schema of each command type and of each event type
	// and schema version (OrderShipped, OrderShippedV1), whose errors are
	// shorter than those of command's and event's oneOf.
	named map[string]*jsonschema.Schema
}

func loadSchemas(t *testing.T) (asyncAPI, schemas) {
	t.Helper()
	raw, err := os.ReadFile("asyncapi.yaml")
	if err != nil {
		t.Fatal(err)
	}
	js, err := yaml.YAMLToJSON(raw)
	if err != nil {
		t.Fatalf("asyncapi.yaml: %v", err)
	}
	var names asyncAPI
	if err := json.Unmarshal(js, &names); err != nil {
		t.Fatalf("asyncapi.yaml: %v", err)
	}
	doc, err := jsonschema.UnmarshalJSON(bytes.NewReader(js))
	if err != nil {
		t.Fatal(err)
	}
	c := jsonschema.NewCompiler()
	c.DefaultDraft(jsonschema.Draft7) // AsyncAPI 3 schemas are JSON Schema draft 7
	c.AssertFormat()
	if err := c.AddResource("asyncapi.yaml", doc); err != nil {
		t.Fatal(err)
	}
	compileAt := func(pointer string) *jsonschema.Schema {
		s, err := c.Compile("asyncapi.yaml#" + pointer)
		if err != nil {
			t.Fatalf("schema %s: %v", pointer, err)
		}
		return s
	}
	compile := func(name string) *jsonschema.Schema { return compileAt("/components/schemas/" + name) }
	named := map[string]*jsonschema.Schema{}
	for _, name := range contract.CommandTypes() {
		named[name] = compile(name)
	}
	for _, name := range eventMessages() {
		named[name] = compile(name)
	}
	return names, schemas{command: compile("command"), event: compile("event"), eventHeaders: compile("eventHeaders"),
		result: compile("result"), snapshot: compile("snapshot"), named: named,
		stateQuery: compile("stateQuery"), orderState: compile("orderState"), historyQuery: compile("historyQuery"),
		history: compile("history"), queryError: compileAt("/components/messages/queryError/headers")}
}

// validate checks a JSON body against s; a body that is not one JSON value
// fails too.
func validate(s *jsonschema.Schema, body []byte) error {
	v, err := jsonschema.UnmarshalJSON(bytes.NewReader(body))
	if err != nil {
		return fmt.Errorf("not JSON: %w", err)
	}
	return s.Validate(v)
}

// eventMessage names the message of an event type and schema version: the
// type for the current version, type + "V" + version for older ones.
func eventMessage(typ string, version int) string {
	if version == contract.SchemaVersion(typ) {
		return typ
	}
	return fmt.Sprintf("%sV%d", typ, version)
}

// eventMessages names the message of every event type and schema version.
func eventMessages() []string {
	var out []string
	for _, typ := range contract.EventTypes() {
		for v := 1; v <= contract.SchemaVersion(typ); v++ {
			out = append(out, eventMessage(typ, v))
		}
	}
	return out
}

func TestAsyncAPINamesWhatTheCodeHas(t *testing.T) {
	doc, s := loadSchemas(t)
	var codeNames []string
	for _, c := range codes {
		codeNames = append(codeNames, string(c))
	}
	for channel, subject := range map[string]string{"queryState": contract.QueryStateSubject, "queryHistory": contract.QueryHistorySubject} {
		if a := doc.Channels[channel].Address; a == nil || *a != subject {
			t.Errorf("channels.%s.address is %v, want %s", channel, a, subject)
		}
	}
	for _, c := range []struct {
		where     string
		got, want []string
	}{
		{"channels.commands.parameters.commandType", doc.Channels["commands"].Parameters["commandType"].Enum, contract.CommandTypes()},
		{"channels.commands.messages", slices.Collect(maps.Keys(doc.Channels["commands"].Messages)), contract.CommandTypes()},
		{"components.schemas.commandType", doc.Components.Schemas["commandType"].Enum, contract.CommandTypes()},
		{"components.schemas.eventType", doc.Components.Schemas["eventType"].Enum, contract.EventTypes()},
		{"channels.events.messages (type, and type + V + each older schema version)", slices.Collect(maps.Keys(doc.Channels["events"].Messages)), eventMessages()},
	} {
		got, want := slices.Sorted(slices.Values(c.got)), slices.Sorted(slices.Values(c.want))
		if !slices.Equal(got, want) {
			t.Errorf("%s lists %v; the code has %v", c.where, got, want)
		}
	}
	// The result's codes are an enum: a result with each must pass and one
	// with another code must not.
	for _, code := range append(slices.Clone(codeNames), "teapot") {
		r := fmt.Sprintf(`{"commandId":"c","status":"rejected","error":{"code":%q,"message":"m"}}`, code)
		if err := validate(s.result, []byte(r)); (err == nil) != slices.Contains(codeNames, code) {
			t.Errorf("result with code %s: %v", code, err)
		}
	}
}

// badCommand is a command the aggregator rejects, and whether the command
// schema can express why.
type badCommand struct {
	name string
	// subjectType and subjectOrder are the subject's tokens; body is the
	// envelope, with %[1]s for the command id.
	subjectType, subjectOrder, body string
	code                            contract.Code
	schemaRejects                   bool
}

func badCommands() []badCommand {
	env := func(typ, data string) string {
		return `{"id":"%[1]s","type":"` + typ + `","orderId":"ord-bad","data":` + data + `}`
	}
	items := strings.Repeat(`{"productId":"p","quantity":1,"unitPriceCents":1},`, 501)
	invalid := contract.CodeInvalidCommand
	return []badCommand{
		{name: "malformed JSON", subjectType: "AddItem", body: `{"id":"%[1]s","type":"AddItem",`, code: invalid, schemaRejects: true},
		{name: "a JSON array", subjectType: "AddItem", body: `[1,2,3]`, code: invalid, schemaRejects: true},
		{name: "an empty body", subjectType: "AddItem", body: ``, code: invalid, schemaRejects: true},
		{name: "trailing content", subjectType: "SubmitOrder", body: env("SubmitOrder", `{}`) + `{}`, code: invalid, schemaRejects: true},
		{name: "an unknown command type", subjectType: "Refund", body: env("Refund", `{}`), code: contract.CodeUnknownCommand, schemaRejects: true},
		{name: "an unknown envelope field", subjectType: "SubmitOrder", body: `{"id":"%[1]s","type":"SubmitOrder","orderId":"ord-bad","expectedVersion":3}`, code: invalid, schemaRejects: true},
		{name: "no id in the body", subjectType: "SubmitOrder", body: `{"type":"SubmitOrder","orderId":"ord-bad"}`, code: invalid, schemaRejects: true},
		{name: "an order id with a wildcard", subjectType: "SubmitOrder", body: `{"id":"%[1]s","type":"SubmitOrder","orderId":"ord*"}`, code: invalid, schemaRejects: true},
		{name: "an unknown data field", subjectType: "AddItem", body: env("AddItem", `{"productId":"p","qty":1,"quantity":1,"unitPriceCents":1}`), code: invalid, schemaRejects: true},
		{name: "no quantity", subjectType: "AddItem", body: env("AddItem", `{"productId":"p","unitPriceCents":1}`), code: invalid, schemaRejects: true},
		{name: "no data", subjectType: "AddItem", body: `{"id":"%[1]s","type":"AddItem","orderId":"ord-bad"}`, code: invalid, schemaRejects: true},
		{name: "quantity 0", subjectType: "AddItem", body: env("AddItem", `{"productId":"p","quantity":0,"unitPriceCents":1}`), code: invalid, schemaRejects: true},
		{name: "a fractional quantity", subjectType: "AddItem", body: env("AddItem", `{"productId":"p","quantity":1.5,"unitPriceCents":1}`), code: invalid, schemaRejects: true},
		{name: "a quantity in quotes", subjectType: "AddItem", body: env("AddItem", `{"productId":"p","quantity":"2","unitPriceCents":1}`), code: invalid, schemaRejects: true},
		{name: "a negative price", subjectType: "AddItem", body: env("AddItem", `{"productId":"p","quantity":1,"unitPriceCents":-1}`), code: invalid, schemaRejects: true},
		{name: "a product id with a dot", subjectType: "AddItem", body: env("AddItem", `{"productId":"a.b","quantity":1,"unitPriceCents":1}`), code: invalid, schemaRejects: true},
		{name: "no customer", subjectType: "CreateOrder", body: env("CreateOrder", `{"currency":"EUR"}`), code: invalid, schemaRejects: true},
		{name: "a lower-case currency", subjectType: "CreateOrder", body: env("CreateOrder", `{"customerId":"c","currency":"eur"}`), code: invalid, schemaRejects: true},
		{name: "501 items", subjectType: "CreateOrder", body: env("CreateOrder", `{"customerId":"c","items":[`+strings.TrimSuffix(items, ",")+`]}`), code: invalid, schemaRejects: true},
		{name: "a method of 501 characters", subjectType: "PayOrder", body: env("PayOrder", `{"paymentId":"p","amountCents":1,"method":"`+strings.Repeat("m", 501)+`"}`), code: invalid, schemaRejects: true},
		{name: "a control character in the reason", subjectType: "CancelOrder", body: env("CancelOrder", `{"reason":"a\u0000b"}`), code: invalid, schemaRejects: true},
		{name: "a blank carrier", subjectType: "ShipOrder", body: env("ShipOrder", `{"trackingNumber":"t","carrier":"   "}`), code: invalid, schemaRejects: true},
		{name: "a newline in metadata.userId", subjectType: "SubmitOrder", body: `{"id":"%[1]s","type":"SubmitOrder","orderId":"ord-bad","metadata":{"userId":"a\nb"}}`, code: invalid, schemaRejects: true},
		{name: "data for a command without data", subjectType: "SubmitOrder", body: env("SubmitOrder", `{"now":true}`), code: invalid, schemaRejects: true},
		// What no payload schema can say.
		{name: "an inactive currency", subjectType: "CreateOrder", body: env("CreateOrder", `{"customerId":"c","currency":"XXX"}`), code: invalid},
		{name: "a line total over 64 bits", subjectType: "AddItem", body: env("AddItem", `{"productId":"p","quantity":1000000,"unitPriceCents":9223372036854775807}`), code: invalid},
		{name: "a body over 64 KiB", subjectType: "SubmitOrder", body: env("SubmitOrder", `{}`+strings.Repeat(" ", contract.MaxBodyBytes)), code: invalid},
		{name: "invalid UTF-8", subjectType: "CancelOrder", body: env("CancelOrder", "{\"reason\":\"a\xffb\"}"), code: invalid},
		{name: "a type other than the subject's", subjectType: "SubmitOrder", body: env("DeliverOrder", `{}`), code: invalid},
		{name: "an order id other than the subject's", subjectType: "SubmitOrder", subjectOrder: "ord-other", body: env("SubmitOrder", `{}`), code: invalid},
		{name: "a body id other than the header's", subjectType: "SubmitOrder", body: `{"id":"other-id","type":"SubmitOrder","orderId":"ord-bad"}`, code: invalid},
	}
}

// TestTrafficMatchesTheSchemas runs the aggregator and every projection
// through whole order lifecycles (including a stored schema version 1
// event), commands sent with the Go client, rejections for every reason a
// client can cause, and bad commands; then validates every command seen on
// the wire, every event, result and snapshot stored, and the requests and
// replies of orders-query about every order against asyncapi.yaml.
func TestTrafficMatchesTheSchemas(t *testing.T) {
	_, s := loadSchemas(t)
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	srv, nc, js := natstest.Streams(t, natstest.Partitions)
	quiet := slog.New(slog.NewTextHandler(io.Discard, nil))

	// Every command published, as subscribers of orders.commands.> see it.
	tap := make(chan *nats.Msg, 4096)
	sub, err := nc.ChanSubscribe(contract.CommandsPrefix+">", tap)
	if err != nil {
		t.Fatal(err)
	}
	defer func() { _ = sub.Unsubscribe() }()

	// An order shipped before OrderShipped's schema version 2.
	store := es.NewStore(js, natstest.Partitions)
	var v1 []contract.Event
	for i, e := range [][2]string{
		{contract.TypeOrderCreated, `{"customerId":"c-1","currency":"EUR"}`},
		{contract.TypeItemAdded, `{"productId":"p-1","quantity":2,"unitPriceCents":150}`},
		{contract.TypeOrderSubmitted, `{"totalCents":300,"itemCount":1}`},
		{contract.TypeOrderPaid, `{"paymentId":"pay-1","amountCents":300,"method":"card"}`},
		{contract.TypeOrderShipped, `{"trackingNumber":"1Z999","carrier":"UPS"}`},
	} {
		v1 = append(v1, contract.Event{ID: es.NewEventID(time.Now()), AggregateType: "order", AggregateID: "ord-v1", Type: e[0],
			SchemaVersion: 1, Version: int64(i + 1), Data: json.RawMessage(e[1]),
			Metadata: contract.EventMetadata{CausationID: fmt.Sprintf("cmd-v1-%d", i), Timestamp: contract.Time{Time: time.Now()}}})
	}
	if _, err := store.Append(ctx, "ord-v1", 0, v1); err != nil {
		t.Fatal(err)
	}

	run := func(name string, fn func(context.Context) error) {
		runCtx, stop := context.WithCancel(context.Background())
		done := make(chan error, 1)
		go func() { done <- fn(runCtx) }()
		t.Cleanup(func() {
			stop()
			if err := <-done; err != nil && !errors.Is(err, context.Canceled) {
				t.Errorf("%s: %v", name, err)
			}
		})
	}
	aggCfg := aggregator.DefaultConfig()
	aggCfg.SnapshotEvery, aggCfg.Logger = 3, quiet
	svc, err := aggregator.New(js, aggCfg)
	if err != nil {
		t.Fatal(err)
	}
	run("aggregator", svc.Run)
	servicetest.Query(t, srv.ClientURL())
	pool, err := pgxpool.New(ctx, cluster.DB(t))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(pool.Close) // after the projections stop
	if _, err := migrations.Apply(ctx, pool, projections.DefaultSchema); err != nil {
		t.Fatal(err)
	}
	for _, name := range projection.Names() {
		p, _ := projection.New(name)
		r, err := projections.NewRunner(pool, js, projections.Config{Projection: p, Partitions: natstest.Partitions, ReplicaID: name, Logger: quiet})
		if err != nil {
			t.Fatal(err)
		}
		run(name, r.Run)
	}

	c, err := client.New(nc)
	if err != nil {
		t.Fatal(err)
	}
	published := 0
	// Whole lifecycles, with every path and the workload's own rejections.
	var ids []string
	for i := range 20 {
		for _, cmd := range workload.Lifecycle("schema", i) {
			if _, err := js.PublishMsg(ctx, cmd.Msg()); err != nil {
				t.Fatal(err)
			}
			ids = append(ids, cmd.ID)
			published++
		}
	}
	// The Go client's JSON, and rejections for the order's state.
	for _, send := range []struct {
		order string
		cmd   contract.Command
		code  contract.Code
	}{
		{order: "ord-client", cmd: contract.CreateOrder{CustomerID: "c", Currency: "GBP", Items: []contract.AddItem{{ProductID: "p", Quantity: 1, UnitPriceCents: 0}}}},
		{order: "ord-client", cmd: contract.CreateOrder{CustomerID: "c"}, code: contract.CodeAlreadyExists},
		{order: "ord-client", cmd: contract.RemoveItem{ProductID: "p"}},
		{order: "ord-client", cmd: contract.SubmitOrder{}, code: contract.CodeInvalidState},
		{order: "ord-client", cmd: contract.CancelOrder{Reason: "empty"}},
		{order: "ord-never", cmd: contract.AddItem{ProductID: "p", Quantity: 1, UnitPriceCents: 1}, code: contract.CodeNotFound},
		{order: "ord-v1", cmd: contract.DeliverOrder{}},
	} {
		env := client.NewEnvelope(send.order, send.cmd)
		env.Metadata = contract.CommandMetadata{UserID: "u-7", CorrelationID: "corr-1"}
		r, err := c.Send(ctx, env)
		var rejected *client.RejectedError
		switch {
		case send.code == "" && err != nil, send.code != "" && (!errors.As(err, &rejected) || rejected.Code() != send.code):
			t.Fatalf("%s on %s: %+v %v, want code %q", send.cmd.CommandType(), send.order, r, err, send.code)
		}
		ids = append(ids, env.ID)
		published++
	}
	// Bad commands, each with the code the aggregator gives it.
	bad := map[string]badCommand{}
	for i, b := range badCommands() {
		id := fmt.Sprintf("bad-%d", i)
		bad[id] = b
		order := cmp.Or(b.subjectOrder, "ord-bad")
		m := nats.NewMsg(contract.CommandSubject(order, b.subjectType))
		m.Header.Set(contract.HeaderMsgID, id)
		m.Data = []byte(strings.ReplaceAll(b.body, "%[1]s", id))
		if _, err := js.PublishMsg(ctx, m); err != nil {
			t.Fatalf("%s: %v", b.name, err)
		}
		ids = append(ids, id)
		published++
	}

	// Every command got its result, bad ones the expected rejection, and
	// every projection processed every accepted one without a dead letter.
	codesSeen := map[contract.Code]bool{}
	for _, id := range ids {
		r, err := c.Await(ctx, id)
		if err != nil {
			t.Fatal(err)
		}
		if b, isBad := bad[id]; isBad && (r.Status != contract.StatusRejected || r.Error.Code != b.code) {
			t.Errorf("%s: %+v, want rejected with %s", b.name, r, b.code)
		}
		if r.Error != nil {
			codesSeen[r.Error.Code] = true
			continue
		}
		for _, name := range projection.Names() {
			if err := readmodel.WaitForProjection(ctx, pool, projections.DefaultSchema, name, natstest.Partitions, r); err != nil {
				t.Fatal(err)
			}
		}
	}
	var deadLetters int
	if err := pool.QueryRow(ctx, `SELECT count(*) FROM jetsource.projection_dead_letters`).Scan(&deadLetters); err != nil || deadLetters != 0 {
		t.Fatalf("%d dead letters (%v)", deadLetters, err)
	}
	for _, code := range []contract.Code{contract.CodeInvalidCommand, contract.CodeUnknownCommand, contract.CodeNotFound, contract.CodeAlreadyExists, contract.CodeInvalidState} {
		if !codesSeen[code] {
			t.Errorf("no command was rejected with %s", code)
		}
	}

	// Queries: every request and reply of orders-query about every order.
	queries := 0
	ask := func(subject string, request, reply *jsonschema.Schema, query any) []byte {
		t.Helper()
		body, _ := json.Marshal(query)
		if err := validate(request, body); err != nil {
			t.Errorf("query %s %s does not match the schema: %v", subject, body, err)
		}
		m, err := nc.RequestWithContext(ctx, subject, body)
		if err != nil {
			t.Fatalf("query %s %s: %v", subject, body, err)
		}
		queries++
		if code := m.Header.Get(contract.QueryErrorCodeHeader); code != "" {
			headers, _ := json.Marshal(map[string]string{contract.QueryErrorCodeHeader: code, contract.QueryErrorHeader: m.Header.Get(contract.QueryErrorHeader)})
			if err := validate(s.queryError, headers); err != nil {
				t.Errorf("query %s %s: error reply %s: %v", subject, body, headers, err)
			}
			return nil
		}
		if err := validate(reply, m.Data); err != nil {
			t.Errorf("query %s %s: reply does not match the schema: %v\n%s", subject, body, err, m.Data)
		}
		return m.Data
	}
	orders := []string{"ord-v1", "ord-client"}
	for i := range 20 {
		orders = append(orders, fmt.Sprintf("schema-ord-%d", i))
	}
	for _, id := range orders {
		ask(contract.QueryStateSubject, s.stateQuery, s.orderState, contract.StateQuery{OrderID: id})
		ask(contract.QueryStateSubject, s.stateQuery, s.orderState, contract.StateQuery{OrderID: id, Version: 1})
		ask(contract.QueryStateSubject, s.stateQuery, s.orderState, contract.StateQuery{OrderID: id, At: &contract.Time{Time: time.Now()}})
		for q := (contract.HistoryQuery{OrderID: id, Limit: 2}); ; {
			var h contract.History
			if err := json.Unmarshal(ask(contract.QueryHistorySubject, s.historyQuery, s.history, q), &h); err != nil || len(h.Events) == 0 {
				t.Fatalf("history of %s after %d: %+v %v", id, q.AfterVersion, h, err)
			}
			if !h.More {
				break
			}
			q.AfterVersion = h.Events[len(h.Events)-1].Version
		}
	}
	if ask(contract.QueryStateSubject, s.stateQuery, s.orderState, contract.StateQuery{OrderID: "ord-never"}) != nil ||
		ask(contract.QueryStateSubject, s.stateQuery, s.orderState, contract.StateQuery{OrderID: "ord-v1", Version: 99}) != nil ||
		ask(contract.QueryHistorySubject, s.historyQuery, s.history, contract.HistoryQuery{OrderID: "ord-never"}) != nil {
		t.Error("queries about what does not exist were answered")
	}
	if err := validate(s.stateQuery, []byte(`{"orderId":"ord-1","version":1,"at":"2026-11-23T10:00:00Z"}`)); err == nil {
		t.Error("the state query schema accepts version and at together")
	}
	t.Logf("%d queries", queries)

	// Commands: good ones pass, bad ones fail where a schema can say why.
	types := map[string]bool{}
	for range published {
		var m *nats.Msg
		select {
		case m = <-tap:
		case <-ctx.Done():
			t.Fatal("the tap saw fewer commands than were published")
		}
		id := m.Header.Get(contract.HeaderMsgID)
		b, isBad := bad[id]
		err := validate(s.command, m.Data)
		if typed, ok := s.named[m.Subject[strings.LastIndexByte(m.Subject, '.')+1:]]; ok && !isBad && err != nil {
			err = validate(typed, m.Data) // the same verdict, said shorter
		}
		switch {
		case !isBad && err != nil:
			t.Errorf("command %s on %s does not match the schema: %v\n%s", id, m.Subject, err, m.Data)
		case isBad && b.schemaRejects && err == nil:
			t.Errorf("bad command %q passes the schema", b.name)
		case isBad && !b.schemaRejects && err != nil:
			t.Errorf("bad command %q: the schema rejects it (%v); mark it schemaRejects", b.name, firstLine(err))
		case !isBad:
			types[m.Subject[strings.LastIndexByte(m.Subject, '.')+1:]] = true
		}
	}
	if got := slices.Sorted(maps.Keys(types)); !slices.Equal(got, slices.Sorted(slices.Values(contract.CommandTypes()))) {
		t.Errorf("good commands covered %v, not every type", got)
	}

	// Events, results and snapshots as stored.
	seen := map[string]bool{}
	for _, m := range storedMessages(ctx, t, js, contract.EventsStream) {
		var e contract.Event
		_ = json.Unmarshal(m.Data, &e)
		name := eventMessage(e.Type, e.SchemaVersion)
		seen[name] = true
		if err := validate(s.event, m.Data); err != nil {
			if typed, ok := s.named[name]; ok {
				err = validate(typed, m.Data)
			}
			t.Errorf("event at %d does not match the schema: %v\n%s", m.Sequence, err, m.Data)
		}
		headers := map[string]string{}
		for k := range m.Header {
			headers[k] = m.Header.Get(k)
		}
		hb, _ := json.Marshal(headers)
		if err := validate(s.eventHeaders, hb); err != nil {
			t.Errorf("event at %d has headers %s: %v", m.Sequence, hb, err)
		}
	}
	for _, name := range eventMessages() {
		if !seen[name] {
			t.Errorf("no %s event was stored", name)
		}
	}
	statuses := map[contract.Status]int{}
	for _, m := range storedMessages(ctx, t, js, contract.ResultsStream) {
		if err := validate(s.result, m.Data); err != nil {
			t.Errorf("result on %s does not match the schema: %v\n%s", m.Subject, err, m.Data)
		}
		var r contract.Result
		_ = json.Unmarshal(m.Data, &r)
		statuses[r.Status]++
	}
	if statuses[contract.StatusAccepted] == 0 || statuses[contract.StatusRejected] == 0 {
		t.Errorf("results by status: %v", statuses)
	}
	snapshots := storedMessages(ctx, t, js, contract.SnapshotsStream)
	for _, m := range snapshots {
		if err := validate(s.snapshot, m.Data); err != nil {
			t.Errorf("snapshot on %s does not match the schema: %v\n%s", m.Subject, err, m.Data)
		}
	}
	if len(snapshots) == 0 {
		t.Error("no snapshot was stored")
	}
}

// TestSchemasRejectWhatTheCodeNeverWrites: stored messages changed in ways
// the services never write fail their schemas, so the schemas are as
// strict as the code.
func TestSchemasRejectWhatTheCodeNeverWrites(t *testing.T) {
	_, s := loadSchemas(t)
	const event = `{"id":"evt-0193a6a4-7f1c-7b43-9a55-3c2f0f1a9e21","aggregateType":"order","aggregateId":"ord-1","type":"OrderShipped",` +
		`"schemaVersion":%d,"version":8,"data":%s,"metadata":{"causationId":"cmd-1","timestamp":"%s"}}`
	const v2, v1 = `{"shipment":{"trackingNumber":"1Z999","carrier":"UPS"}}`, `{"trackingNumber":"1Z999","carrier":"UPS"}`
	const at = "2026-11-23T10:00:00.123456Z"
	for _, c := range []struct {
		name   string
		schema *jsonschema.Schema
		body   string
		valid  bool
	}{
		{"OrderShipped 2", s.event, fmt.Sprintf(event, 2, v2, at), true},
		{"OrderShipped 1", s.event, fmt.Sprintf(event, 1, v1, at), true},
		{"OrderShipped 2 with version 1 data", s.event, fmt.Sprintf(event, 2, v1, at), false},
		{"OrderShipped 1 with version 2 data", s.event, fmt.Sprintf(event, 1, v2, at), false},
		{"OrderShipped 3", s.event, fmt.Sprintf(event, 3, v2, at), false},
		{"a timestamp with milliseconds", s.event, fmt.Sprintf(event, 2, v2, "2026-11-23T10:00:00.123Z"), false},
		{"an accepted result", s.result, `{"commandId":"c","orderId":"o","status":"accepted","version":3,"eventIds":["evt-1"],"streamSequence":9}`, true},
		{"an accepted result without events", s.result, `{"commandId":"c","orderId":"o","status":"accepted","version":3,"streamSequence":9}`, false},
		{"an accepted result with an error", s.result, `{"commandId":"c","orderId":"o","status":"accepted","version":3,"eventIds":["evt-1"],"streamSequence":9,"error":{"code":"internal","message":"m"}}`, false},
		{"a rejected result without an error", s.result, `{"commandId":"c","status":"rejected"}`, false},
		{"an unaddressable rejection", s.result, `{"commandId":"","status":"rejected","error":{"code":"invalid_command","message":"m"}}`, true},
	} {
		if err := validate(c.schema, []byte(c.body)); (err == nil) != c.valid {
			t.Errorf("%s: valid=%v, got %v", c.name, c.valid, err)
		}
	}
}

// storedMessages returns every message of a stream, oldest first.
func storedMessages(ctx context.Context, t *testing.T, js jetstream.JetStream, stream string) []*jetstream.RawStreamMsg {
	t.Helper()
	var out []*jetstream.RawStreamMsg
	for next := uint64(1); ; {
		msgs, err := jetstreamext.GetBatch(ctx, js, stream, 1000, jetstreamext.GetBatchSeq(next))
		if err != nil {
			t.Fatal(err)
		}
		got := 0
		for m, err := range msgs {
			if errors.Is(err, jetstreamext.ErrNoMessages) {
				break
			}
			if err != nil {
				t.Fatal(err)
			}
			out = append(out, m)
			next = m.Sequence + 1
			got++
		}
		if got == 0 {
			return out
		}
	}
}

// firstLine shortens a validation error to its first line.
func firstLine(err error) string {
	line, _, _ := strings.Cut(err.Error(), "\n")
	return line
}
