package order

import "fmt"

// Decide returns the events a command produces on the given state, or why it
// is rejected. It is pure: same state and command, same answer. It
// validates c itself, so a command built in code gets the same checks as one
// from ParseCommand.
func Decide(s State, c Command) ([]Event, error) {
	if err := c.validate(); err != nil {
		return nil, err
	}
	if create, ok := c.(CreateOrder); ok {
		return decideCreate(s, create)
	}
	if !s.Exists() {
		return nil, fmt.Errorf("%w: %s", ErrNotFound, s.ID)
	}
	switch c := c.(type) {
	case AddItem:
		e, err := addItem(s, c)
		if err != nil {
			return nil, err
		}
		return []Event{e}, nil
	case RemoveItem:
		if s.Status != StatusDraft {
			return nil, stateErr(s.Status, "cannot remove items from a %s order", s.Status)
		}
		if s.itemIndex(c.ProductID) < 0 {
			return nil, stateErr(s.Status, "product %s is not in the order", c.ProductID)
		}
		return []Event{ItemRemoved(c)}, nil
	case SubmitOrder:
		if s.Status != StatusDraft {
			return nil, stateErr(s.Status, "cannot submit a %s order", s.Status)
		}
		if len(s.Items) == 0 {
			return nil, stateErr(s.Status, "cannot submit an order without items")
		}
		return []Event{OrderSubmitted{TotalCents: s.TotalCents, ItemCount: len(s.Items)}}, nil
	case PayOrder:
		if s.Status != StatusSubmitted {
			return nil, stateErr(s.Status, "cannot pay a %s order", s.Status)
		}
		if c.AmountCents != s.TotalCents {
			return nil, stateErr(s.Status, "amount %d does not equal the order total %d", c.AmountCents, s.TotalCents)
		}
		return []Event{OrderPaid(c)}, nil
	case ShipOrder:
		if s.Status != StatusPaid {
			return nil, stateErr(s.Status, "cannot ship a %s order", s.Status)
		}
		return []Event{OrderShipped{Shipment: Shipment(c)}}, nil
	case DeliverOrder:
		if s.Status != StatusShipped {
			return nil, stateErr(s.Status, "cannot deliver a %s order", s.Status)
		}
		return []Event{OrderDelivered{}}, nil
	case CancelOrder:
		switch s.Status {
		case StatusShipped, StatusDelivered, StatusCanceled:
			return nil, stateErr(s.Status, "cannot cancel a %s order", s.Status)
		}
		return []Event{OrderCanceled(c)}, nil
	default:
		return nil, fmt.Errorf("%w: %T", ErrUnknownCommand, c)
	}
}

func decideCreate(s State, c CreateOrder) ([]Event, error) {
	if s.Exists() {
		return nil, fmt.Errorf("%w: %s", ErrAlreadyExists, s.ID)
	}
	currency := c.Currency
	if currency == "" {
		currency = DefaultCurrency
	}
	created := OrderCreated{CustomerID: c.CustomerID, Currency: currency}
	events := []Event{created}
	s = Evolve(s, created)
	for i, it := range c.Items {
		e, err := addItem(s, it)
		if err != nil {
			return nil, fieldErr(fmt.Sprintf("items[%d]", i), "%v", err)
		}
		events = append(events, e)
		s = Evolve(s, e)
	}
	return events, nil
}

func addItem(s State, c AddItem) (Event, error) {
	if s.Status != StatusDraft {
		return nil, stateErr(s.Status, "cannot add items to a %s order", s.Status)
	}
	if i := s.itemIndex(c.ProductID); i >= 0 {
		line := s.Items[i]
		if line.UnitPriceCents != c.UnitPriceCents {
			return nil, stateErr(s.Status, "product %s is in the order at %d cents a unit, not %d; remove it first to change its price",
				c.ProductID, line.UnitPriceCents, c.UnitPriceCents)
		}
		if line.Quantity+c.Quantity > MaxQuantity {
			return nil, stateErr(s.Status, "product %s would reach quantity %d; the limit is %d",
				c.ProductID, line.Quantity+c.Quantity, MaxQuantity)
		}
	} else if len(s.Items) >= MaxItems {
		return nil, stateErr(s.Status, "the order has %d distinct items; the limit is %d", len(s.Items), MaxItems)
	}
	lineCents, _ := mulCents(c.Quantity, c.UnitPriceCents) // validate checked it
	if _, ok := addCents(s.TotalCents, lineCents); !ok {
		return nil, stateErr(s.Status, "the order total would overflow a 64-bit cent amount")
	}
	return ItemAdded(c), nil
}
