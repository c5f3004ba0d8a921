package order

import "slices"

// Status is where an order is in its lifecycle:
// draft → submitted → paid → shipped → delivered, or canceled.
type Status string

// The statuses. The zero Status means the order does not exist.
const (
	StatusDraft     Status = "draft"
	StatusSubmitted Status = "submitted"
	StatusPaid      Status = "paid"
	StatusShipped   Status = "shipped"
	StatusDelivered Status = "delivered"
	StatusCanceled  Status = "canceled"
)

// State is an order as its events made it. It is derived only by Evolve;
// Decide reads it. Values are immutable: Evolve returns a new State and
// never writes to the Items of the one it was given.
type State struct {
	ID             string `json:"id"`
	CustomerID     string `json:"customerId,omitempty"`
	Currency       string `json:"currency,omitempty"`
	Status         Status `json:"status,omitempty"`
	Items          []Item `json:"items,omitempty"`
	TotalCents     int64  `json:"totalCents"`
	PaymentID      string `json:"paymentId,omitempty"`
	PaidCents      int64  `json:"paidCents,omitempty"`
	PaymentMethod  string `json:"paymentMethod,omitempty"`
	TrackingNumber string `json:"trackingNumber,omitempty"`
	Carrier        string `json:"carrier,omitempty"`
	CancelReason   string `json:"cancelReason,omitempty"`
	// Version counts the events applied, from 1 with no gaps.
	Version int64 `json:"version"`
}

// Item is one product line, in the order products were first added.
type Item struct {
	ProductID      string `json:"productId"`
	Quantity       int64  `json:"quantity"`
	UnitPriceCents int64  `json:"unitPriceCents"`
}

// New is the state of an order with no events.
func New(id string) State { return State{ID: id} }

// Exists reports whether the order has been created.
func (s State) Exists() bool { return s.Version > 0 }

func (s State) itemIndex(productID string) int {
	for i, it := range s.Items {
		if it.ProductID == productID {
			return i
		}
	}
	return -1
}

// Evolve applies one event. It is total: events were validated by Decide
// before they were stored, so it neither checks nor fails. It leaves s and
// the items s shares untouched.
func Evolve(s State, e Event) State {
	s.Items = slices.Clone(s.Items)
	s.Apply(e)
	return s
}

// Apply is Evolve in place, for a caller that owns s and its items alone
// (a loader folding a fresh state): folding n events costs O(n) instead of
// copying the items per event.
func (s *State) Apply(e Event) {
	switch e := e.(type) {
	case OrderCreated:
		s.CustomerID, s.Currency, s.Status = e.CustomerID, e.Currency, StatusDraft
	case ItemAdded:
		if i := s.itemIndex(e.ProductID); i >= 0 {
			s.Items[i].Quantity += e.Quantity
		} else {
			s.Items = append(s.Items, Item(e))
		}
		s.TotalCents += e.Quantity * e.UnitPriceCents
	case ItemRemoved:
		if i := s.itemIndex(e.ProductID); i >= 0 {
			s.TotalCents -= s.Items[i].Quantity * s.Items[i].UnitPriceCents
			s.Items = slices.Delete(s.Items, i, i+1)
		}
	case OrderSubmitted:
		s.Status = StatusSubmitted
	case OrderPaid:
		s.Status, s.PaymentID, s.PaidCents, s.PaymentMethod = StatusPaid, e.PaymentID, e.AmountCents, e.Method
	case OrderShipped:
		s.Status, s.TrackingNumber, s.Carrier = StatusShipped, e.Shipment.TrackingNumber, e.Shipment.Carrier
	case OrderDelivered:
		s.Status = StatusDelivered
	case OrderCanceled:
		s.Status, s.CancelReason = StatusCanceled, e.Reason
	}
	s.Version++
}

// Fold applies events in order to s.
func Fold(s State, events ...Event) State {
	for _, e := range events {
		s = Evolve(s, e)
	}
	return s
}
