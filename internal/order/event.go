package order

import (
	"encoding/json"
	"fmt"
)

// AggregateType names orders in event envelopes.
const AggregateType = "order"

// Event types as stored in envelopes and the Event-Type header.
const (
	TypeOrderCreated   = "OrderCreated"
	TypeItemAdded      = "ItemAdded"
	TypeItemRemoved    = "ItemRemoved"
	TypeOrderSubmitted = "OrderSubmitted"
	TypeOrderPaid      = "OrderPaid"
	TypeOrderShipped   = "OrderShipped"
	TypeOrderDelivered = "OrderDelivered"
	TypeOrderCanceled  = "OrderCanceled"
)

// Event is one of the event structs below: a fact about an order.
type Event interface {
	EventType() string
}

// OrderCreated opens a draft order.
type OrderCreated struct {
	CustomerID string `json:"customerId"`
	Currency   string `json:"currency"`
}

// ItemAdded adds units of a product; a product already present grows.
type ItemAdded struct {
	ProductID      string `json:"productId"`
	Quantity       int64  `json:"quantity"`
	UnitPriceCents int64  `json:"unitPriceCents"`
}

// ItemRemoved removes a product line.
type ItemRemoved struct {
	ProductID string `json:"productId"`
}

// OrderSubmitted freezes the order's lines; ItemCount counts distinct
// products.
type OrderSubmitted struct {
	TotalCents int64 `json:"totalCents"`
	ItemCount  int   `json:"itemCount"`
}

// OrderPaid records the payment.
type OrderPaid struct {
	PaymentID   string `json:"paymentId"`
	AmountCents int64  `json:"amountCents"`
	Method      string `json:"method"`
}

// OrderShipped records the shipment.
type OrderShipped struct {
	Shipment Shipment `json:"shipment"`
}

// Shipment is a parcel on its way: how to track it and who carries it.
type Shipment struct {
	TrackingNumber string `json:"trackingNumber"`
	Carrier        string `json:"carrier"`
}

// OrderDelivered records the delivery.
type OrderDelivered struct{}

// OrderCanceled records the cancellation and its reason.
type OrderCanceled struct {
	Reason string `json:"reason"`
}

func (OrderCreated) EventType() string   { return TypeOrderCreated }
func (ItemAdded) EventType() string      { return TypeItemAdded }
func (ItemRemoved) EventType() string    { return TypeItemRemoved }
func (OrderSubmitted) EventType() string { return TypeOrderSubmitted }
func (OrderPaid) EventType() string      { return TypeOrderPaid }
func (OrderShipped) EventType() string   { return TypeOrderShipped }
func (OrderDelivered) EventType() string { return TypeOrderDelivered }
func (OrderCanceled) EventType() string  { return TypeOrderCanceled }

// ParseEvent decodes the data of a stored event of the current schema
// version. Older versions are upcast (contract.Upcast) before they get
// here; the domain knows only the current shapes.
func ParseEvent(eventType string, data []byte) (Event, error) {
	switch eventType {
	case TypeOrderCreated:
		return unmarshal[OrderCreated](data)
	case TypeItemAdded:
		return unmarshal[ItemAdded](data)
	case TypeItemRemoved:
		return unmarshal[ItemRemoved](data)
	case TypeOrderSubmitted:
		return unmarshal[OrderSubmitted](data)
	case TypeOrderPaid:
		return unmarshal[OrderPaid](data)
	case TypeOrderShipped:
		return unmarshal[OrderShipped](data)
	case TypeOrderDelivered:
		return unmarshal[OrderDelivered](data)
	case TypeOrderCanceled:
		return unmarshal[OrderCanceled](data)
	default:
		return nil, fmt.Errorf("unknown order event type %q", eventType)
	}
}

func unmarshal[T Event](data []byte) (Event, error) {
	var e T
	if len(data) > 0 {
		if err := json.Unmarshal(data, &e); err != nil {
			return nil, fmt.Errorf("decode %s: %w", e.EventType(), err)
		}
	}
	return e, nil
}
