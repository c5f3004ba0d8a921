package contract

import (
	"encoding/json"
	"fmt"
	"time"
)

// Headers set on every stored event besides HeaderMsgID, so subscribers
// can route without decoding bodies.
const (
	HeaderEventType        = "Event-Type"
	HeaderAggregateVersion = "Aggregate-Version"
)

// Event is the stored envelope of one event. Sequence and Subject are where
// it is stored; they are not part of the body.
type Event struct {
	ID            string          `json:"id"`
	AggregateType string          `json:"aggregateType"`
	AggregateID   string          `json:"aggregateId"`
	Type          string          `json:"type"`
	SchemaVersion int             `json:"schemaVersion"`
	Version       int64           `json:"version"`
	Data          json.RawMessage `json:"data"`
	Metadata      EventMetadata   `json:"metadata"`

	Sequence uint64 `json:"-"`
	Subject  string `json:"-"`
}

// EventMetadata links an event to the command and the request that caused
// it.
type EventMetadata struct {
	UserID        string `json:"userId,omitempty"`
	CorrelationID string `json:"correlationId,omitempty"`
	CausationID   string `json:"causationId,omitempty"`
	Timestamp     Time   `json:"timestamp"`
}

// Time is a UTC instant written with exactly six fractional digits, the
// contract's timestamp form, and read from any RFC 3339 form.
type Time struct{ time.Time }

const timeLayout = "2006-01-02T15:04:05.000000Z"

// MarshalJSON writes the contract's form.
func (t Time) MarshalJSON() ([]byte, error) {
	b := make([]byte, 0, len(timeLayout)+2)
	b = append(b, '"')
	b = t.UTC().AppendFormat(b, timeLayout)
	return append(b, '"'), nil
}

// UnmarshalJSON reads any RFC 3339 time.
func (t *Time) UnmarshalJSON(b []byte) error {
	var s string
	if err := json.Unmarshal(b, &s); err != nil {
		return fmt.Errorf("timestamp: %w", err)
	}
	v, err := time.Parse(time.RFC3339Nano, s)
	if err != nil {
		return fmt.Errorf("timestamp: %w", err)
	}
	t.Time = v.UTC()
	return nil
}

// DecodeEvent reads a stored message body into an envelope.
func DecodeEvent(subject string, sequence uint64, body []byte) (Event, error) {
	e, ok := decodeEnvelope(body)
	if !ok {
		e = Event{}
		if err := json.Unmarshal(body, &e); err != nil {
			return Event{}, fmt.Errorf("decode event at sequence %d: %w", sequence, err)
		}
	}
	e.Subject, e.Sequence = subject, sequence
	return e, nil
}

// Event types: the envelope's type and the Event-Type header.
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

// EventTypes lists every event type of the contract.
func EventTypes() []string {
	return []string{TypeOrderCreated, TypeItemAdded, TypeItemRemoved, TypeOrderSubmitted,
		TypeOrderPaid, TypeOrderShipped, TypeOrderDelivered, TypeOrderCanceled}
}

// EventData is the data of an event envelope: exactly the types below, so
// a type switch over them is complete.
type EventData interface {
	EventType() string
	eventData()
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

// OrderShipped records the shipment. Schema version 2; version 1 had the
// shipment's fields at the top level (see Upcast).
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

func (OrderCreated) eventData()   {}
func (ItemAdded) eventData()      {}
func (ItemRemoved) eventData()    {}
func (OrderSubmitted) eventData() {}
func (OrderPaid) eventData()      {}
func (OrderShipped) eventData()   {}
func (OrderDelivered) eventData() {}
func (OrderCanceled) eventData()  {}

// ParseEventData decodes the data of an event of the given type at its
// current schema version (Upcast lifts older ones).
func ParseEventData(eventType string, data []byte) (EventData, error) {
	switch eventType {
	case TypeOrderCreated:
		return decodeEventData[OrderCreated](data)
	case TypeItemAdded:
		return decodeEventData[ItemAdded](data)
	case TypeItemRemoved:
		return decodeEventData[ItemRemoved](data)
	case TypeOrderSubmitted:
		return decodeEventData[OrderSubmitted](data)
	case TypeOrderPaid:
		return decodeEventData[OrderPaid](data)
	case TypeOrderShipped:
		return decodeEventData[OrderShipped](data)
	case TypeOrderDelivered:
		return decodeEventData[OrderDelivered](data)
	case TypeOrderCanceled:
		return decodeEventData[OrderCanceled](data)
	default:
		return nil, fmt.Errorf("unknown event type %q", eventType)
	}
}

func decodeEventData[T EventData](data []byte) (EventData, error) {
	var e T
	if len(data) > 0 {
		if err := json.Unmarshal(data, &e); err != nil {
			return nil, fmt.Errorf("decode %s: %w", e.EventType(), err)
		}
	}
	return e, nil
}
