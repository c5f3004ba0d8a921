package aggregator

import (
	"encoding/json"
	"errors"
	"fmt"
	"strconv"
	"strings"

	"github.com/jetsource/jetsource/contract"
	"github.com/jetsource/jetsource/internal/es"
	"github.com/jetsource/jetsource/internal/order"
)

// snapshotSchema versions the JSON encoding of Aggregate in snapshots.
// Bump it whenever Aggregate or order.State changes shape. Version 1 held
// every handled command id; 2 holds a filter of them (handledCommands) and
// packs the order's items.
const snapshotSchema = 2

// Aggregate is what the aggregator folds an order's events into: the
// domain state, plus the commands that produced the events.
type Aggregate struct {
	Order    order.State
	commands *handledCommands
}

// aggregateJSON is Aggregate's snapshot encoding. The order's items, the
// bulk of a large order, are packed into one string (see packItems): it
// decodes several times faster than a JSON array of objects.
type aggregateJSON struct {
	Order    order.State      `json:"order"`
	Items    string           `json:"items,omitempty"`
	Commands *handledCommands `json:"handledCommands"`
}

// MarshalJSON writes the snapshot encoding.
func (a Aggregate) MarshalJSON() ([]byte, error) {
	v := aggregateJSON{Order: a.Order, Items: packItems(a.Order.Items), Commands: a.commands}
	v.Order.Items = nil
	return json.Marshal(v)
}

// UnmarshalJSON reads the snapshot encoding.
func (a *Aggregate) UnmarshalJSON(b []byte) error {
	var v aggregateJSON
	if err := json.Unmarshal(b, &v); err != nil {
		return err
	}
	if v.Commands == nil {
		return errors.New("snapshot state without handled commands")
	}
	items, err := unpackItems(v.Items)
	if err != nil {
		return err
	}
	a.Order, a.commands = v.Order, v.Commands
	a.Order.Items = items
	return nil
}

// packItems writes items as "productId quantity unitPriceCents" joined by
// commas. Product ids never hold spaces or commas (contract.ValidateID).
func packItems(items []order.Item) string {
	var b []byte
	for i, it := range items {
		if i > 0 {
			b = append(b, ',')
		}
		b = append(b, it.ProductID...)
		b = append(b, ' ')
		b = strconv.AppendInt(b, it.Quantity, 10)
		b = append(b, ' ')
		b = strconv.AppendInt(b, it.UnitPriceCents, 10)
	}
	return string(b)
}

func unpackItems(s string) ([]order.Item, error) {
	if s == "" {
		return nil, nil
	}
	items := make([]order.Item, 0, strings.Count(s, ",")+1)
	for packed := range strings.SplitSeq(s, ",") {
		id, rest, ok1 := strings.Cut(packed, " ")
		qty, price, ok2 := strings.Cut(rest, " ")
		q, err1 := strconv.ParseInt(qty, 10, 64)
		p, err2 := strconv.ParseInt(price, 10, 64)
		if !ok1 || !ok2 || err1 != nil || err2 != nil || id == "" {
			return nil, fmt.Errorf("snapshot item %q is not \"productId quantity unitPriceCents\"", packed)
		}
		items = append(items, order.Item{ProductID: id, Quantity: q, UnitPriceCents: p})
	}
	return items, nil
}

func (a Aggregate) knows(commandID string) answer { return a.commands.knows(commandID) }

// NewRepository loads and appends orders as the aggregator does. cfg's
// SnapshotSchema is set here: it belongs to Aggregate's encoding.
func NewRepository(store *es.Store, cfg es.RepositoryConfig) *es.Repository[Aggregate] {
	cfg.SnapshotSchema = snapshotSchema
	return es.NewRepository(store, fold(), cfg)
}

// fold builds Aggregates while loading. The state being loaded is owned by
// the loader alone, so applying mutates its items and command set in place
// instead of copying them per event.
func fold() es.Fold[Aggregate] {
	return es.Fold[Aggregate]{
		Zero: func(id string) Aggregate { return Aggregate{Order: order.New(id), commands: newHandledCommands()} },
		Apply: func(a Aggregate, e contract.Event) (Aggregate, error) {
			ev, err := order.ParseEvent(e.Type, e.Data)
			if err != nil {
				return a, err
			}
			a.Order.Apply(ev)
			if id := e.Metadata.CausationID; id != "" {
				a.commands.add(id)
			}
			return a, nil
		},
	}
}

// next is the Aggregate after a command's events. It adds the command to
// a's command set in place: an order's state is used by one command at a
// time, and if the append fails the state is dropped and loaded afresh.
func (a Aggregate) next(commandID string, events []order.Event) Aggregate {
	a.Order = order.Fold(a.Order, events...)
	a.commands.add(commandID)
	return a
}
