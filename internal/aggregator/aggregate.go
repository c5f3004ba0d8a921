package aggregator

import (
	"maps"

	"github.com/jetsource/jetsource/contract"
	"github.com/jetsource/jetsource/internal/es"
	"github.com/jetsource/jetsource/internal/order"
)

// snapshotSchema versions the JSON encoding of Aggregate in snapshots.
// Bump it whenever Aggregate or order.State changes shape.
const snapshotSchema = 1

// Aggregate is what the aggregator folds an order's events into: the
// domain state, plus the ids of the commands that produced events, which
// make a redelivered or re-sent command idempotent after the results
// stream has forgotten it.
type Aggregate struct {
	Order    order.State         `json:"order"`
	Commands map[string]struct{} `json:"commands,omitempty"`
}

func (a Aggregate) handled(commandID string) bool {
	_, ok := a.Commands[commandID]
	return ok
}

// NewRepository loads and appends orders as the aggregator does. cfg's
// SnapshotSchema is set here: it belongs to Aggregate's encoding.
func NewRepository(store *es.Store, cfg es.RepositoryConfig) *es.Repository[Aggregate] {
	cfg.SnapshotSchema = snapshotSchema
	return es.NewRepository(store, fold(), cfg)
}

// fold builds Aggregates while loading. The state being loaded is owned by
// the loader alone, so applying mutates its items and Commands set in place
// instead of copying them per event.
func fold() es.Fold[Aggregate] {
	return es.Fold[Aggregate]{
		Zero: func(id string) Aggregate { return Aggregate{Order: order.New(id)} },
		Apply: func(a Aggregate, e contract.Event) (Aggregate, error) {
			ev, err := order.ParseEvent(e.Type, e.Data)
			if err != nil {
				return a, err
			}
			a.Order.Apply(ev)
			if id := e.Metadata.CausationID; id != "" {
				if a.Commands == nil {
					a.Commands = make(map[string]struct{})
				}
				a.Commands[id] = struct{}{}
			}
			return a, nil
		},
	}
}

// next is the Aggregate after a command's events. Unlike fold, it must not
// touch a's Commands set: a is shared with the cache until the append
// succeeds.
func (a Aggregate) next(commandID string, events []order.Event) Aggregate {
	n := Aggregate{Order: order.Fold(a.Order, events...), Commands: maps.Clone(a.Commands)}
	if n.Commands == nil {
		n.Commands = make(map[string]struct{}, 1)
	}
	n.Commands[commandID] = struct{}{}
	return n
}
