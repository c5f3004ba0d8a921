// Package readmodel holds the order read models: order_summary (tables
// orders and order_items), order_history (order_history) and sales_daily
// (sales_daily and sales_daily_orders). Each is a projections.Projection
// whose Apply folds a batch per order in memory and writes it with a few
// multi-row statements.
package readmodel

import (
	"errors"
	"fmt"
	"strings"
	"time"

	"github.com/jetsource/jetsource/contract"
	"github.com/jetsource/jetsource/internal/order"
	"github.com/jetsource/jetsource/internal/projections"
)

// Projection names.
const (
	NameOrderSummary = "order_summary"
	NameOrderHistory = "order_history"
	NameSalesDaily   = "sales_daily"
)

var (
	// ErrUnknownProjection means no read model has the given name.
	ErrUnknownProjection = errors.New("unknown projection")
	// ErrUnexpectedEvent means an event does not fit the order's history as
	// the read model has it: a gap or repeat in versions, an event of an
	// order it never saw created, an unsupported schema version.
	ErrUnexpectedEvent = errors.New("unexpected event")
)

// Names lists the read models.
func Names() []string { return []string{NameOrderSummary, NameOrderHistory, NameSalesDaily} }

// New returns the read model with the given name.
func New(name string) (projections.Projection, error) {
	switch name {
	case NameOrderSummary:
		return OrderSummary{}, nil
	case NameOrderHistory:
		return OrderHistory{}, nil
	case NameSalesDaily:
		return SalesDaily{}, nil
	default:
		return nil, fmt.Errorf("%w %q; known: %s", ErrUnknownProjection, name, strings.Join(Names(), ", "))
	}
}

// parsed is an envelope with its decoded data.
type parsed struct {
	contract.Event
	data order.Event
	at   time.Time
}

// parse decodes every event's data up front, so a bad event fails the
// batch before anything is written.
func parse(events []contract.Event) ([]parsed, error) {
	out := make([]parsed, len(events))
	for i, e := range events {
		if want := contract.SchemaVersion(e.Type); e.SchemaVersion != want {
			return nil, fmt.Errorf("%w: event %s at sequence %d has schema version %d; this build reads %d",
				ErrUnexpectedEvent, e.ID, e.Sequence, e.SchemaVersion, want)
		}
		data, err := order.ParseEvent(e.Type, e.Data)
		if err != nil {
			return nil, fmt.Errorf("event %s at sequence %d: %w", e.ID, e.Sequence, err)
		}
		out[i] = parsed{Event: e, data: data, at: e.Metadata.Timestamp.UTC()}
	}
	return out, nil
}

// optional maps a zero value to NULL.
func optional[T comparable](v T) *T {
	var zero T
	if v == zero {
		return nil
	}
	return &v
}
