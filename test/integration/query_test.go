package integration

import (
	"context"
	"encoding/json"
	"testing"
	"time"

	"github.com/nats-io/nats.go/micro"

	"github.com/jetsource/jetsource/client"
	"github.com/jetsource/jetsource/contract"
	"github.com/jetsource/jetsource/internal/es"
	"github.com/jetsource/jetsource/internal/eventually"
	"github.com/jetsource/jetsource/internal/natstest"
)

// TestQueryServiceUnderItsRole runs the query binary as the user query of
// deploy/nats/auth.conf: the aggregator role stores an order's events, a
// reader asks orders-query for its state and history, and an operator finds
// the service as `nats micro ls` does. Nothing is refused.
func TestQueryServiceUnderItsRole(t *testing.T) {
	srv := startAuthNATS(t)
	ctx := context.Background()
	operator := connectAs(t, srv, "operator")
	topo := natstest.Topology(natstest.Partitions)
	if err := es.Setup(ctx, operator.js, topo); err != nil {
		t.Fatal(err)
	}
	created := contract.Event{ID: es.NewEventID(time.Now()), AggregateType: "order", AggregateID: "ord-q", Type: contract.TypeOrderCreated,
		SchemaVersion: 1, Version: 1, Data: json.RawMessage(`{"customerId":"c-1","currency":"EUR"}`),
		Metadata: contract.EventMetadata{Timestamp: contract.Time{Time: time.Now()}}}
	if _, err := es.NewStore(connectAs(t, srv, "aggregator").js, natstest.Partitions).Append(ctx, "ord-q", 0, []contract.Event{created}); err != nil {
		t.Fatal(err)
	}
	start(t, "query", "NATS_URL="+srv.ClientURL(), "NATS_USER=query", "NATS_PASSWORD="+rolePassword("query"),
		"NATS_INBOX_PREFIX=_INBOX.query", "METRICS_ADDR=127.0.0.1:0")
	// As `nats micro ls` finds it.
	eventually.True(t, 30*time.Second, "orders-query to answer $SRV.PING", func() bool {
		m, err := operator.nc.Request("$SRV.PING."+contract.QueryService, nil, time.Second)
		var ping micro.Ping
		return err == nil && json.Unmarshal(m.Data, &ping) == nil && ping.Name == contract.QueryService
	})
	sendCtx, cancel := context.WithTimeout(ctx, 30*time.Second)
	defer cancel()

	reader := connectAs(t, srv, "reader")
	c, err := client.New(reader.nc)
	if err != nil {
		t.Fatal(err)
	}
	if s, err := c.State(sendCtx, contract.StateQuery{OrderID: "ord-q"}); err != nil || s.Status != "draft" || s.Currency != "EUR" {
		t.Fatalf("state as reader: %+v %v", s, err)
	}
	if h, err := c.History(sendCtx, contract.HistoryQuery{OrderID: "ord-q"}); err != nil || len(h.Events) != 1 || h.More {
		t.Fatalf("history as reader: %+v %v", h, err)
	}

	for _, rc := range []*roleConn{operator, reader} {
		select {
		case v := <-rc.violations:
			t.Errorf("%s was refused: %v", rc.role, v)
		default:
		}
	}
}
