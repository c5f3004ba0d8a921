package es

import (
	"encoding/json"
	"fmt"

	"github.com/jetsource/jetsource/contract"
)

// Upcaster rewrites the data of one event type from one schema version to
// the next. Chained, upcasters lift any stored version to the current one,
// so old events stay readable after their shape changes.
type Upcaster func(data json.RawMessage) (json.RawMessage, error)

// UpcastKey names the event type and schema version an Upcaster reads.
type UpcastKey struct {
	Type          string
	SchemaVersion int
}

// Upcasters maps each (type, schema version) to the step that lifts it one
// version. A nil or empty map upcasts nothing.
type Upcasters map[UpcastKey]Upcaster

// Upcast applies the chain of steps for e's type from its schema version
// until no step is registered.
func (u Upcasters) Upcast(e contract.Event) (contract.Event, error) {
	for {
		step, ok := u[UpcastKey{Type: e.Type, SchemaVersion: e.SchemaVersion}]
		if !ok {
			return e, nil
		}
		data, err := step(e.Data)
		if err != nil {
			return contract.Event{}, fmt.Errorf("upcast %s schema %d of event %s: %w", e.Type, e.SchemaVersion, e.ID, err)
		}
		e.Data = data
		e.SchemaVersion++
	}
}
