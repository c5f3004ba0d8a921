package readmodel_test

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"testing"
	"time"

	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/jetsource/jetsource/contract"
	"github.com/jetsource/jetsource/internal/order"
	"github.com/jetsource/jetsource/internal/pgtest"
	"github.com/jetsource/jetsource/internal/projections"
	"github.com/jetsource/jetsource/internal/projections/migrations"
	"github.com/jetsource/jetsource/internal/projections/readmodel"
)

var cluster *pgtest.Cluster

func TestMain(m *testing.M) { pgtest.Main(m, &cluster) }

var seq uint64

func ev(orderID string, version int64, data order.Event) contract.Event {
	body, _ := json.Marshal(data)
	seq++
	return contract.Event{ID: fmt.Sprintf("evt-%d", seq), AggregateType: order.AggregateType, AggregateID: orderID,
		Type: data.EventType(), SchemaVersion: contract.SchemaVersion(data.EventType()), Version: version, Data: body, Sequence: seq,
		Metadata: contract.EventMetadata{Timestamp: contract.Time{Time: time.Date(2026, 5, 1, 12, 0, int(seq), 0, time.UTC)}}}
}

// apply applies batches in one transaction each, as a runner would, and
// returns the error of the last one.
func apply(t *testing.T, db *pgxpool.Pool, p projections.Projection, batches ...[]contract.Event) error {
	t.Helper()
	var err error
	for _, b := range batches {
		err = func() error {
			tx, err := db.Begin(context.Background())
			if err != nil {
				return err
			}
			defer tx.Rollback(context.Background())
			if _, err := tx.Exec(context.Background(), "SET LOCAL search_path TO jetsource"); err != nil {
				return err
			}
			if err := p.Apply(context.Background(), tx, b); err != nil {
				return err
			}
			return tx.Commit(context.Background())
		}()
	}
	return err
}

// TestApplyRejectsEventsThatDoNotFit gives each read model a history it
// cannot make sense of; the error makes the runner dead-letter the event.
func TestApplyRejectsEventsThatDoNotFit(t *testing.T) {
	db, err := pgxpool.New(context.Background(), cluster.DB(t))
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	if _, err := migrations.Apply(context.Background(), db, "jetsource"); err != nil {
		t.Fatal(err)
	}
	created := func(id string) contract.Event { return ev(id, 1, order.OrderCreated{CustomerID: "c", Currency: "EUR"}) }
	newer := created("ord-v2")
	newer.SchemaVersion = 2
	unknown := created("ord-x")
	unknown.Type = "OrderTeleported"

	for _, tc := range []struct {
		name    string
		p       projections.Projection
		batches [][]contract.Event
		want    error
	}{
		{"summary: version repeated", readmodel.OrderSummary{},
			[][]contract.Event{{created("ord-1")}, {ev("ord-1", 1, order.OrderSubmitted{})}}, readmodel.ErrUnexpectedEvent},
		{"summary: order never created", readmodel.OrderSummary{},
			[][]contract.Event{{ev("ord-2", 2, order.ItemAdded{ProductID: "p", Quantity: 1})}}, readmodel.ErrUnexpectedEvent},
		{"summary: newer schema version", readmodel.OrderSummary{}, [][]contract.Event{{newer}}, readmodel.ErrUnexpectedEvent},
		{"history: unknown event type", readmodel.OrderHistory{}, [][]contract.Event{{unknown}}, nil},
		{"history: event recorded twice", readmodel.OrderHistory{},
			[][]contract.Event{{created("ord-3")}, {ev("ord-3", 1, order.OrderSubmitted{})}}, nil},
		{"sales: payment of an order never created", readmodel.SalesDaily{},
			[][]contract.Event{{ev("ord-4", 4, order.OrderPaid{PaymentID: "p", AmountCents: 10})}}, readmodel.ErrUnexpectedEvent},
	} {
		t.Run(tc.name, func(t *testing.T) {
			err := apply(t, db, tc.p, tc.batches...)
			if err == nil || tc.want != nil && !errors.Is(err, tc.want) {
				t.Fatalf("Apply: %v; want an error (%v)", err, tc.want)
			}
		})
	}
}

// TestSummaryAllowsAGapLeftBySkip checks that an operator's Skip of a
// dead-lettered event (a gap in versions) does not block the order.
func TestSummaryAllowsAGapLeftBySkip(t *testing.T) {
	db, err := pgxpool.New(context.Background(), cluster.DB(t))
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	if _, err := migrations.Apply(context.Background(), db, "jetsource"); err != nil {
		t.Fatal(err)
	}
	err = apply(t, db, readmodel.OrderSummary{},
		[]contract.Event{ev("ord-1", 1, order.OrderCreated{CustomerID: "c", Currency: "USD"})},
		[]contract.Event{ev("ord-1", 3, order.ItemAdded{ProductID: "p", Quantity: 2, UnitPriceCents: 5})})
	if err != nil {
		t.Fatal(err)
	}
	var version, total int64
	var items int
	if err := db.QueryRow(context.Background(), "SELECT version, total_cents, item_count FROM jetsource.orders WHERE id = 'ord-1'").
		Scan(&version, &total, &items); err != nil || version != 3 || total != 10 || items != 1 {
		t.Fatalf("order after the gap: version %d, total %d, %d items, %v", version, total, items, err)
	}
}

func TestNew(t *testing.T) {
	for _, name := range readmodel.Names() {
		p, err := readmodel.New(name)
		if err != nil || p.Name() != name || len(p.Tables()) == 0 {
			t.Errorf("New(%q) = %v, %v", name, p, err)
		}
	}
	if _, err := readmodel.New("orders"); !errors.Is(err, readmodel.ErrUnknownProjection) {
		t.Errorf("New of an unknown name: %v", err)
	}
}
