package integration

import (
	"bufio"
	"context"
	"encoding/json"
	"fmt"
	"os/exec"
	"path/filepath"
	"reflect"
	"strings"
	"testing"
	"time"

	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/jetsource/jetsource/client"
	"github.com/jetsource/jetsource/contract"
	"github.com/jetsource/jetsource/internal/es"
	"github.com/jetsource/jetsource/internal/natstest"
	"github.com/jetsource/jetsource/internal/projections"
	"github.com/jetsource/jetsource/internal/projections/readmodel"
)

// TestSchemaVersion1EventsAreReadEverywhere seeds the event store with an
// order shipped at OrderShipped schema version 1, as builds before version
// 2 wrote it, and runs every binary over it: the aggregator loads the order
// and accepts the next command, each projector projects it, the query
// service answers with it (through orderctl), and the Go client decodes it,
// all in the version 2 shape.
func TestSchemaVersion1EventsAreReadEverywhere(t *testing.T) {
	t.Parallel()
	s := newStack(t)
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	const id = "ord-v1"
	seeded := []struct{ typ, data string }{
		{contract.TypeOrderCreated, `{"customerId":"c-1","currency":"EUR"}`},
		{contract.TypeItemAdded, `{"productId":"p-1","quantity":2,"unitPriceCents":150}`},
		{contract.TypeOrderSubmitted, `{"totalCents":300,"itemCount":1}`},
		{contract.TypeOrderPaid, `{"paymentId":"pay-1","amountCents":300,"method":"card"}`},
		{contract.TypeOrderShipped, `{"trackingNumber":"1Z999","carrier":"UPS"}`},
	}
	v1 := make([]contract.Event, len(seeded))
	for i, e := range seeded {
		v1[i] = contract.Event{ID: es.NewEventID(time.Now()), AggregateType: "order", AggregateID: id, Type: e.typ, SchemaVersion: 1,
			Version: int64(i + 1), Data: json.RawMessage(e.data),
			Metadata: contract.EventMetadata{CausationID: fmt.Sprintf("cmd-v1-%d", i), Timestamp: contract.Time{Time: time.Now()}}}
	}
	if _, err := es.NewStore(s.js, natstest.Partitions).Append(ctx, id, 0, v1); err != nil {
		t.Fatal(err)
	}
	s.run("aggregator", "aggregator")
	s.run("query", "query")
	for _, name := range readmodel.Names() {
		s.run(name, "projector", "PROJECTOR_PROJECTION="+name)
	}

	const shipment = `{"shipment":{"trackingNumber":"1Z999","carrier":"UPS"}}`
	want := contract.OrderShipped{Shipment: contract.Shipment{TrackingNumber: "1Z999", Carrier: "UPS"}}

	// The aggregator: only a shipped order can be delivered.
	c, err := client.New(s.nc)
	if err != nil {
		t.Fatal(err)
	}
	if r, err := c.Send(ctx, client.NewEnvelope(id, contract.DeliverOrder{})); err != nil || r.Version != 6 {
		t.Fatalf("deliver the order shipped at version 1: %+v %v", r, err)
	}

	// The Go client: events as read, and the raw version 1 envelope.
	events, err := c.Events(ctx, id)
	if err != nil || len(events) != 6 {
		t.Fatalf("events: %d %v", len(events), err)
	}
	if e := events[4]; e.SchemaVersion != 2 || string(e.Data) != shipment {
		t.Fatalf("client read OrderShipped as schema version %d %s", e.SchemaVersion, e.Data)
	}
	for _, e := range []contract.Event{events[4], v1[4]} {
		if data, err := client.DecodeEvent(e); err != nil || data != want {
			t.Fatalf("DecodeEvent(schema version %d) = %#v, %v", e.SchemaVersion, data, err)
		}
	}

	// The projectors: every projection caught up, nothing dead-lettered.
	pool, err := pgxpool.New(ctx, s.db)
	if err != nil {
		t.Fatal(err)
	}
	defer pool.Close()
	s.caughtUp(pool, projections.DefaultSchema, readmodel.Names(), time.Minute)
	var status, tracking, carrier, history string
	var schema, deadLetters, paid int
	if err := pool.QueryRow(ctx, `SELECT status, tracking_number, carrier FROM jetsource.orders WHERE id = $1`, id).Scan(&status, &tracking, &carrier); err != nil ||
		status != "delivered" || tracking != "1Z999" || carrier != "UPS" {
		t.Fatalf("order_summary: %s %s %s %v", status, tracking, carrier, err)
	}
	if err := pool.QueryRow(ctx, `SELECT schema_version, data::text FROM jetsource.order_history WHERE order_id = $1 AND version = 5`, id).Scan(&schema, &history); err != nil ||
		schema != 2 || !jsonEqual(history, shipment) {
		t.Fatalf("order_history: schema version %d %s %v", schema, history, err)
	}
	if err := pool.QueryRow(ctx, `SELECT orders_paid FROM jetsource.sales_daily WHERE currency = 'EUR'`).Scan(&paid); err != nil || paid != 1 {
		t.Fatalf("sales_daily: %d orders paid, %v", paid, err)
	}
	if err := pool.QueryRow(ctx, `SELECT count(*) FROM jetsource.projection_dead_letters`).Scan(&deadLetters); err != nil || deadLetters != 0 {
		t.Fatalf("%d dead letters, %v", deadLetters, err)
	}

	// The query service, through orderctl: the state as of the shipment,
	// and the history.
	out := orderctl(t, s, "state", "--json", "--version", "5", id)
	var state struct{ Status, TrackingNumber, Carrier string }
	if err := json.Unmarshal([]byte(out), &state); err != nil || state.Status != "shipped" || state.TrackingNumber != "1Z999" || state.Carrier != "UPS" {
		t.Fatalf("orderctl state: %s (%v)", out, err)
	}
	lines := bufio.NewScanner(strings.NewReader(orderctl(t, s, "history", "--json", id)))
	var shipped contract.Event
	for lines.Scan() {
		var e contract.Event
		if err := json.Unmarshal(lines.Bytes(), &e); err == nil && e.Type == contract.TypeOrderShipped {
			shipped = e
		}
	}
	if shipped.SchemaVersion != 2 || string(shipped.Data) != shipment {
		t.Fatalf("orderctl history: OrderShipped at schema version %d %s", shipped.SchemaVersion, shipped.Data)
	}
}

// orderctl runs the orderctl binary against the stack and returns its
// standard output.
func orderctl(t *testing.T, s *stack, args ...string) string {
	t.Helper()
	cmd := exec.Command(filepath.Join(binDir, "orderctl"), args...)
	cmd.Env = []string{"NATS_URL=" + s.natsURL}
	out, err := cmd.Output()
	if err != nil {
		t.Fatalf("orderctl %s: %v\n%s", strings.Join(args, " "), err, out)
	}
	return string(out)
}

// jsonEqual reports whether two JSON texts hold the same value.
func jsonEqual(a, b string) bool {
	var va, vb any
	if json.Unmarshal([]byte(a), &va) != nil || json.Unmarshal([]byte(b), &vb) != nil {
		return false
	}
	return reflect.DeepEqual(va, vb)
}
