package contract

import (
	"bytes"
	"encoding/json"
	"fmt"
	"strings"
)

// HeaderMsgID carries the command id on a command message (and the event
// id on an event): JetStream drops a re-send with the same id within the
// stream's duplicate window.
const HeaderMsgID = "Nats-Msg-Id"

// MaxBodyBytes is the largest command body accepted.
const MaxBodyBytes = 64 << 10

// CommandEnvelope is the JSON body of a command message. Its OrderID and
// Type must match the subject's tokens.
type CommandEnvelope struct {
	ID       string          `json:"id"`
	Type     string          `json:"type"`
	OrderID  string          `json:"orderId"`
	Data     json.RawMessage `json:"data,omitempty"`
	Metadata CommandMetadata `json:"metadata"`
}

// CommandMetadata travels from the command to its events.
type CommandMetadata struct {
	UserID        string `json:"userId,omitempty"`
	CorrelationID string `json:"correlationId,omitempty"`
}

// Command types: the last token of a command subject and the envelope's
// type.
const (
	TypeCreateOrder  = "CreateOrder"
	TypeAddItem      = "AddItem"
	TypeRemoveItem   = "RemoveItem"
	TypeSubmitOrder  = "SubmitOrder"
	TypePayOrder     = "PayOrder"
	TypeShipOrder    = "ShipOrder"
	TypeDeliverOrder = "DeliverOrder"
	TypeCancelOrder  = "CancelOrder"
)

// CommandTypes lists every command type of the contract.
func CommandTypes() []string {
	return []string{TypeCreateOrder, TypeAddItem, TypeRemoveItem, TypeSubmitOrder,
		TypePayOrder, TypeShipOrder, TypeDeliverOrder, TypeCancelOrder}
}

// Command is the data of a command envelope: one of the types below.
type Command interface {
	CommandType() string
}

// CreateOrder opens a draft order, optionally with its first items.
// Currency is an ISO 4217 code; USD if empty.
type CreateOrder struct {
	CustomerID string    `json:"customerId"`
	Currency   string    `json:"currency,omitempty"`
	Items      []AddItem `json:"items,omitempty"`
}

// AddItem adds units of a product to a draft order.
type AddItem struct {
	ProductID      string `json:"productId"`
	Quantity       int64  `json:"quantity"`
	UnitPriceCents int64  `json:"unitPriceCents"`
}

// RemoveItem removes a product line from a draft order.
type RemoveItem struct {
	ProductID string `json:"productId"`
}

// SubmitOrder closes a draft order for payment.
type SubmitOrder struct{}

// PayOrder pays a submitted order's exact total.
type PayOrder struct {
	PaymentID   string `json:"paymentId"`
	AmountCents int64  `json:"amountCents"`
	Method      string `json:"method"`
}

// ShipOrder records that a paid order left the warehouse.
type ShipOrder struct {
	TrackingNumber string `json:"trackingNumber"`
	Carrier        string `json:"carrier"`
}

// DeliverOrder records that a shipped order arrived.
type DeliverOrder struct{}

// CancelOrder cancels an order that has not shipped.
type CancelOrder struct {
	Reason string `json:"reason"`
}

func (CreateOrder) CommandType() string  { return TypeCreateOrder }
func (AddItem) CommandType() string      { return TypeAddItem }
func (RemoveItem) CommandType() string   { return TypeRemoveItem }
func (SubmitOrder) CommandType() string  { return TypeSubmitOrder }
func (PayOrder) CommandType() string     { return TypePayOrder }
func (ShipOrder) CommandType() string    { return TypeShipOrder }
func (DeliverOrder) CommandType() string { return TypeDeliverOrder }
func (CancelOrder) CommandType() string  { return TypeCancelOrder }

// ParseCommand decodes command data of the given type, refusing unknown
// fields. It checks the JSON's shape only; the aggregator decides whether
// the values are acceptable.
func ParseCommand(commandType string, data []byte) (Command, error) {
	switch commandType {
	case TypeCreateOrder:
		return decodeCommand[CreateOrder](data)
	case TypeAddItem:
		return decodeCommand[AddItem](data)
	case TypeRemoveItem:
		return decodeCommand[RemoveItem](data)
	case TypeSubmitOrder:
		return decodeCommand[SubmitOrder](data)
	case TypePayOrder:
		return decodeCommand[PayOrder](data)
	case TypeShipOrder:
		return decodeCommand[ShipOrder](data)
	case TypeDeliverOrder:
		return decodeCommand[DeliverOrder](data)
	case TypeCancelOrder:
		return decodeCommand[CancelOrder](data)
	default:
		return nil, fmt.Errorf("unknown command type %q; the types are %s", commandType, strings.Join(CommandTypes(), ", "))
	}
}

func decodeCommand[T Command](data []byte) (Command, error) {
	var c T
	if len(bytes.TrimSpace(data)) == 0 {
		return c, nil
	}
	dec := json.NewDecoder(bytes.NewReader(data))
	dec.DisallowUnknownFields()
	if err := dec.Decode(&c); err != nil {
		return nil, fmt.Errorf("decode %s data: %w", c.CommandType(), err)
	}
	return c, nil
}
