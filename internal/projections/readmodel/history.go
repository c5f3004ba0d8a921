package readmodel

import (
	"context"
	"encoding/json"
	"fmt"

	"github.com/jackc/pgx/v5"

	"github.com/jetsource/jetsource/contract"
	"github.com/jetsource/jetsource/internal/projections"
)

// OrderHistory keeps the audit trail: one row per event in order_history,
// with its envelope's metadata and its data as jsonb.
type OrderHistory struct{}

// Name implements projections.Projection.
func (OrderHistory) Name() string { return NameOrderHistory }

// Tables implements projections.Projection.
func (OrderHistory) Tables() []string { return []string{"order_history"} }

// Apply copies the batch's events in. An event already recorded breaks the
// unique keys and fails the batch: the runner's cursor should have skipped it.
func (OrderHistory) Apply(ctx context.Context, tx projections.Tx, events []contract.Event) error {
	evs, err := parse(events)
	if err != nil {
		return err
	}
	rows := make([][]any, len(evs))
	for i, e := range evs {
		data := e.Data
		if len(data) == 0 {
			data = json.RawMessage("{}")
		}
		md := e.Metadata
		rows[i] = []any{e.ID, e.AggregateID, e.Version, int64(e.Sequence), e.Type, int32(e.SchemaVersion),
			data, optional(md.UserID), optional(md.CorrelationID), optional(md.CausationID), e.at}
	}
	columns := []string{"event_id", "order_id", "version", "stream_sequence", "event_type", "schema_version",
		"data", "user_id", "correlation_id", "causation_id", "occurred_at"}
	if _, err := tx.CopyFrom(ctx, pgx.Identifier{"order_history"}, columns, pgx.CopyFromRows(rows)); err != nil {
		return fmt.Errorf("write order history: %w", err)
	}
	return nil
}
