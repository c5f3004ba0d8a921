package client_test

import (
	"context"
	"errors"
	"testing"
	"time"

	"github.com/jetsource/jetsource/client"
	"github.com/jetsource/jetsource/contract"
)

func TestStateAndHistory(t *testing.T) {
	c := startService(t)
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	for _, cmd := range []contract.Command{
		contract.CreateOrder{CustomerID: "c-1", Items: []contract.AddItem{{ProductID: "a", Quantity: 1, UnitPriceCents: 100}, {ProductID: "b", Quantity: 2, UnitPriceCents: 50}}},
		contract.SubmitOrder{},
	} {
		if _, err := c.Send(ctx, client.NewEnvelope("ord-q", cmd)); err != nil {
			t.Fatal(err)
		}
	}

	now, err := c.State(ctx, contract.StateQuery{OrderID: "ord-q"})
	if err != nil || now.Status != "submitted" || now.TotalCents != 200 || now.Version != 4 || len(now.Items) != 2 {
		t.Fatalf("state now: %+v %v", now, err)
	}
	v2, err := c.State(ctx, contract.StateQuery{OrderID: "ord-q", Version: 2})
	if err != nil || v2.Version != 2 || v2.TotalCents != 100 {
		t.Fatalf("state at version 2: %+v %v", v2, err)
	}
	var qerr *client.QueryError
	if _, err := c.State(ctx, contract.StateQuery{OrderID: "ord-q", Version: 9}); !errors.As(err, &qerr) || qerr.Code != contract.QueryNotFound {
		t.Fatalf("state at version 9: %v", err)
	}
	if _, err := c.State(ctx, contract.StateQuery{OrderID: "ord-none"}); !errors.As(err, &qerr) || qerr.Code != 404 || qerr.Message == "" {
		t.Fatalf("state of no order: %v", err)
	}
	if _, err := c.State(ctx, contract.StateQuery{OrderID: "a.b"}); !errors.Is(err, contract.ErrInvalidID) {
		t.Fatalf("state of an invalid id: %v", err)
	}

	first, err := c.History(ctx, contract.HistoryQuery{OrderID: "ord-q", Limit: 3})
	if err != nil || len(first.Events) != 3 || !first.More {
		t.Fatalf("history page 1: %+v %v", first, err)
	}
	rest, err := c.History(ctx, contract.HistoryQuery{OrderID: "ord-q", AfterVersion: 3, Limit: 3})
	if err != nil || len(rest.Events) != 1 || rest.More || rest.Events[0].Type != contract.TypeOrderSubmitted {
		t.Fatalf("history page 2: %+v %v", rest, err)
	}
}
