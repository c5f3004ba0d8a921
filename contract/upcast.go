package contract

import (
	"encoding/json"
	"errors"
	"fmt"
)

// ErrSchemaVersion is wrapped by Upcast's errors for an event whose schema
// version this build cannot lift: written by a newer build, or invalid.
var ErrSchemaVersion = errors.New("unreadable schema version")

// SchemaVersion is the current shape of an event type's data: what the
// aggregator writes and ParseEventData reads. Stored events keep the
// version they were written with; Upcast lifts them.
//
// History: OrderShipped 2 moved carrier and trackingNumber into a shipment
// object. Every other type is at 1.
func SchemaVersion(eventType string) int {
	if eventType == TypeOrderShipped {
		return 2
	}
	return 1
}

// Upcast returns e with its data lifted to the current schema version of
// its type, one version at a time; an event already current comes back
// unchanged. Events are immutable, so every reader upcasts what it reads:
// the event store, the projectors, the clients.
func Upcast(e Event) (Event, error) {
	current := SchemaVersion(e.Type)
	if e.SchemaVersion < 1 || e.SchemaVersion > current {
		return Event{}, fmt.Errorf("%w: event %s (%s) has schema version %d; this build reads 1 to %d",
			ErrSchemaVersion, e.ID, e.Type, e.SchemaVersion, current)
	}
	for e.SchemaVersion < current {
		data, err := upcastStep(e.Type, e.SchemaVersion, e.Data)
		if err != nil {
			return Event{}, fmt.Errorf("upcast %s schema version %d of event %s: %w", e.Type, e.SchemaVersion, e.ID, err)
		}
		e.Data, e.SchemaVersion = data, e.SchemaVersion+1
	}
	return e, nil
}

// upcastStep lifts data of eventType from schema version v to v+1.
// SchemaVersion promises a step for every version below the current one.
func upcastStep(eventType string, v int, data json.RawMessage) (json.RawMessage, error) {
	switch {
	case eventType == TypeOrderShipped && v == 1:
		var v1 struct {
			TrackingNumber string `json:"trackingNumber"`
			Carrier        string `json:"carrier"`
		}
		if err := json.Unmarshal(data, &v1); err != nil {
			return nil, err
		}
		return json.Marshal(OrderShipped{Shipment: Shipment(v1)})
	default:
		return nil, fmt.Errorf("no upcaster from version %d", v)
	}
}
