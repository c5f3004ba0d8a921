package es

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"

	"github.com/nats-io/nats.go/jetstream"

	"github.com/jetsource/jetsource/contract"
)

// Snapshot is an aggregate's folded state as of an event. It is a cache:
// loading works without it, and one written by another schema version of
// the state is ignored.
type Snapshot struct {
	AggregateID string `json:"aggregateId"`
	// Version is the aggregate version the state includes.
	Version int64 `json:"version"`
	// Sequence is the stream sequence of the last event the state includes;
	// loading resumes after it.
	Sequence uint64 `json:"sequence"`
	// SchemaVersion is the version of the state's encoding.
	SchemaVersion int             `json:"schemaVersion"`
	TakenAt       contract.Time   `json:"takenAt"`
	State         json.RawMessage `json:"state"`
}

// SaveSnapshot stores snap as the aggregate's latest snapshot; the stream
// keeps only the newest per aggregate.
func (s *Store) SaveSnapshot(ctx context.Context, snap Snapshot) error {
	body, err := json.Marshal(snap)
	if err != nil {
		return fmt.Errorf("encode snapshot of %s: %w", snap.AggregateID, err)
	}
	if _, err := s.js.Publish(ctx, contract.SnapshotSubject(snap.AggregateID), body); err != nil {
		return fmt.Errorf("save snapshot of %s at version %d: %w", snap.AggregateID, snap.Version, err)
	}
	return nil
}

// LoadSnapshot returns the aggregate's latest snapshot, if it has one.
func (s *Store) LoadSnapshot(ctx context.Context, aggregateID string) (Snapshot, bool, error) {
	m, err := directLastMsg(ctx, s.js, contract.SnapshotsStream, contract.SnapshotSubject(aggregateID))
	if errors.Is(err, jetstream.ErrMsgNotFound) {
		return Snapshot{}, false, nil
	}
	if err != nil {
		return Snapshot{}, false, fmt.Errorf("load snapshot of %s: %w", aggregateID, err)
	}
	var snap Snapshot
	if err := json.Unmarshal(m.Data, &snap); err != nil {
		return Snapshot{}, false, fmt.Errorf("decode snapshot of %s: %w", aggregateID, err)
	}
	return snap, true, nil
}
