package client_test

import (
	"context"
	"errors"
	"io"
	"log/slog"
	"os"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/jetsource/jetsource/client"
	"github.com/jetsource/jetsource/contract"
	"github.com/jetsource/jetsource/internal/aggregatord"
	"github.com/jetsource/jetsource/internal/es"
	"github.com/jetsource/jetsource/internal/natsserver"
	"github.com/jetsource/jetsource/internal/natstest"
	"github.com/jetsource/jetsource/internal/queryd"
)

// stops stops what jetsource started, when the tests end.
var stops []func()

func TestMain(m *testing.M) {
	code := m.Run()
	for _, stop := range stops {
		stop()
	}
	os.Exit(code)
}

// jetsource starts what the tests and examples talk to, an embedded NATS
// server with the JetSource streams, an aggregator and the query service,
// and returns a connection to it.
func jetsource() *nats.Conn {
	srv, err := natsserver.Start(natsserver.Config{})
	if err != nil {
		panic(err)
	}
	nc, err := nats.Connect(srv.ClientURL())
	if err != nil {
		panic(err)
	}
	js, err := jetstream.New(nc)
	if err != nil {
		panic(err)
	}
	if err := es.Setup(context.Background(), js, natstest.Topology(contract.DefaultPartitions)); err != nil {
		panic(err)
	}
	cfg := aggregatord.DefaultConfig()
	cfg.NATS.URL, cfg.MetricsAddr = srv.ClientURL(), ""
	agg, err := aggregatord.NewMain(cfg, slog.New(slog.NewTextHandler(io.Discard, nil)))
	if err != nil {
		panic(err)
	}
	if err := agg.Run(context.Background()); err != nil {
		panic(err)
	}
	qcfg := queryd.DefaultConfig()
	qcfg.NATS.URL, qcfg.MetricsAddr = srv.ClientURL(), ""
	query, err := queryd.NewMain(qcfg, slog.New(slog.NewTextHandler(io.Discard, nil)))
	if err != nil {
		panic(err)
	}
	if err := query.Run(context.Background()); err != nil {
		panic(err)
	}
	stops = append(stops, func() { _ = query.Close(); _ = agg.Close(); nc.Close(); srv.Shutdown() })
	return nc
}

func startService(t *testing.T) *client.Client {
	t.Helper()
	c, err := client.New(jetsource())
	if err != nil {
		t.Fatal(err)
	}
	return c
}

func TestSendTypedCommandsAndReadTheOrderBack(t *testing.T) {
	c := startService(t)
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	const id = "ord-client-1"
	create := client.NewEnvelope(id, contract.CreateOrder{CustomerID: "cust-9", Items: []contract.AddItem{{ProductID: "a", Quantity: 2, UnitPriceCents: 150}}})
	create.Metadata = contract.CommandMetadata{UserID: "u-1", CorrelationID: "corr-9"}
	r, err := c.Send(ctx, create)
	if err != nil || r.Version != 2 || len(r.EventIDs) != 2 {
		t.Fatalf("create: %+v %v", r, err)
	}
	again, err := c.Send(ctx, create)
	if err != nil || again.StreamSequence != r.StreamSequence {
		t.Fatalf("re-sent create: %+v %v, first %+v", again, err, r)
	}
	if _, err := c.Send(ctx, client.NewEnvelope(id, contract.SubmitOrder{})); err != nil {
		t.Fatal(err)
	}

	_, err = c.Send(ctx, client.NewEnvelope(id, contract.PayOrder{PaymentID: "p", AmountCents: 1, Method: "card"}))
	var rejected *client.RejectedError
	if !errors.Is(err, client.ErrRejected) || !errors.As(err, &rejected) || rejected.Code() != "invalid_state" {
		t.Fatalf("wrong amount: %v", err)
	}

	events, err := c.Events(ctx, id)
	if err != nil || len(events) != 3 {
		t.Fatalf("events: %d %v", len(events), err)
	}
	data, err := client.DecodeEvent(events[1])
	if added, ok := data.(contract.ItemAdded); err != nil || !ok || added.Quantity != 2 {
		t.Fatalf("decoded %#v %v", data, err)
	}
	if events[0].Metadata.UserID != "u-1" || events[0].Metadata.CorrelationID != "corr-9" || events[0].Metadata.CausationID != create.ID {
		t.Fatalf("metadata %+v", events[0].Metadata)
	}
}

// TestInvalidIdsNeverReachASubject: ids become subject tokens, so the
// client refuses wildcards, dots and spaces before anything is sent.
func TestInvalidIdsNeverReachASubject(t *testing.T) {
	c := startService(t)
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	for _, id := range []string{"*", ">", "a.b", "a b", ""} {
		if _, err := c.Send(ctx, client.NewEnvelope(id, contract.SubmitOrder{})); !errors.Is(err, contract.ErrInvalidID) {
			t.Errorf("Send to order %q: %v", id, err)
		}
		env := client.NewEnvelope("ord-1", contract.SubmitOrder{})
		env.ID = id
		if _, err := c.Send(ctx, env); !errors.Is(err, contract.ErrInvalidID) {
			t.Errorf("Send with command id %q: %v", id, err)
		}
		if _, err := c.Await(ctx, id); !errors.Is(err, contract.ErrInvalidID) {
			t.Errorf("Await(%q): %v", id, err)
		}
		if _, err := c.Events(ctx, id); !errors.Is(err, contract.ErrInvalidID) {
			t.Errorf("Events(%q): %v", id, err)
		}
	}
	// Ids inside the data reach no subject: the aggregator rejects them.
	_, err := c.Send(ctx, client.NewEnvelope("ord-1", contract.AddItem{ProductID: "x.y", Quantity: 1}))
	var rejected *client.RejectedError
	if !errors.As(err, &rejected) || rejected.Code() != contract.CodeInvalidCommand {
		t.Errorf("Send with an invalid product id: %v", err)
	}
}
