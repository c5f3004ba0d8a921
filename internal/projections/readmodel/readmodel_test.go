package readmodel_test

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
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
		err = applyIn(db, "jetsource", p, b)
	}
	return err
}

// applyIn applies batches to the tables in schema in one transaction each
// and stops at the first error.
func applyIn(db *pgxpool.Pool, schema string, p projections.Projection, batches ...[]contract.Event) error {
	for _, b := range batches {
		err := func() error {
			tx, err := db.Begin(context.Background())
			if err != nil {
				return err
			}
			defer tx.Rollback(context.Background())
			if _, err := tx.Exec(context.Background(), "SET LOCAL search_path TO "+pgx.Identifier{schema}.Sanitize()); err != nil {
				return err
			}
			if err := p.Apply(context.Background(), tx, b); err != nil {
				return err
			}
			return tx.Commit(context.Background())
		}()
		if err != nil {
			return err
		}
	}
	return nil
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

// TestSummaryBatchesCutAnywhere applies one history in batches of every
// size and compares the rows with those of one event per batch: a batch
// may hold any part of an order's life (a line added to, removed and
// added again, several steps at once), and its rows, written without
// reading the earlier ones, must come out the same.
func TestSummaryBatchesCutAnywhere(t *testing.T) {
	db, err := pgxpool.New(context.Background(), cluster.DB(t))
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	events := []contract.Event{
		ev("ord-1", 1, order.OrderCreated{CustomerID: "c1", Currency: "EUR"}),
		ev("ord-1", 2, order.ItemAdded{ProductID: "a", Quantity: 2, UnitPriceCents: 300}),
		ev("ord-2", 1, order.OrderCreated{CustomerID: "c2", Currency: "USD"}),
		ev("ord-1", 3, order.ItemAdded{ProductID: "b", Quantity: 1, UnitPriceCents: 50}),
		ev("ord-1", 4, order.ItemAdded{ProductID: "a", Quantity: 3, UnitPriceCents: 300}),
		ev("ord-2", 2, order.ItemAdded{ProductID: "c", Quantity: 4, UnitPriceCents: 25}),
		ev("ord-1", 5, order.ItemRemoved{ProductID: "a"}),
		ev("ord-1", 6, order.ItemAdded{ProductID: "a", Quantity: 1, UnitPriceCents: 300}),
		ev("ord-1", 7, order.ItemRemoved{ProductID: "b"}),
		ev("ord-1", 8, order.OrderSubmitted{TotalCents: 300, ItemCount: 1}),
		ev("ord-2", 3, order.OrderCanceled{Reason: "changed mind"}),
		ev("ord-1", 9, order.OrderPaid{PaymentID: "pay-1", AmountCents: 300, Method: "card"}),
		ev("ord-1", 10, order.OrderShipped{Shipment: order.Shipment{TrackingNumber: "trk-1", Carrier: "ups"}}),
		ev("ord-1", 11, order.OrderDelivered{}),
	}
	var want map[string][]string
	for size := 1; size <= len(events); size++ {
		schema := fmt.Sprintf("cut_%d", size)
		if _, err := migrations.Apply(context.Background(), db, schema); err != nil {
			t.Fatal(err)
		}
		var batches [][]contract.Event
		for i := 0; i < len(events); i += size {
			batches = append(batches, events[i:min(i+size, len(events))])
		}
		if err := applyIn(db, schema, readmodel.OrderSummary{}, batches...); err != nil {
			t.Fatalf("batches of %d: %v", size, err)
		}
		got := dumpTables(t, db, schema, readmodel.OrderSummary{}.Tables())
		if size == 1 {
			want = got
			continue
		}
		for table, rows := range want {
			if !slices.Equal(got[table], rows) {
				t.Errorf("batches of %d: %s holds\n  %s\nnot, as one event per batch gives,\n  %s",
					size, table, strings.Join(got[table], "\n  "), strings.Join(rows, "\n  "))
			}
		}
	}
}

// dumpTables returns every row of the tables in schema as JSON text, sorted.
func dumpTables(t *testing.T, db *pgxpool.Pool, schema string, tables []string) map[string][]string {
	t.Helper()
	out := map[string][]string{}
	for _, table := range tables {
		rows, err := db.Query(context.Background(), "SELECT to_jsonb(r)::text FROM "+pgx.Identifier{schema, table}.Sanitize()+" r ORDER BY 1")
		if err != nil {
			t.Fatal(err)
		}
		if out[table], err = pgx.CollectRows(rows, pgx.RowTo[string]); err != nil {
			t.Fatal(err)
		}
	}
	return out
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
