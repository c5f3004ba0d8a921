package order

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"math"
	"reflect"
	"strings"
	"unicode/utf8"
)

// Limits of the order domain (docs/contract.md, "Commands").
const (
	MaxItems      = 500       // distinct products per order
	MaxQuantity   = 1_000_000 // units of one product per order
	MaxTextLength = 500       // characters in free text: method, carrier, tracking number, reason
)

// Command types as they appear on the wire (the last subject token and the
// envelope's "type").
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

// CommandTypes lists every command type this domain handles.
func CommandTypes() []string {
	return []string{TypeCreateOrder, TypeAddItem, TypeRemoveItem, TypeSubmitOrder,
		TypePayOrder, TypeShipOrder, TypeDeliverOrder, TypeCancelOrder}
}

// Command is one of the command structs below. Values from ParseCommand are
// validated; Decide trusts their fields.
type Command interface {
	CommandType() string
	validate() error
}

// CreateOrder opens a draft order. Items optionally fills it in the same
// step: the order is created with them or not at all.
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

// PayOrder records the payment of a submitted order's exact total.
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

// ParseCommand decodes and validates a command's JSON data. Unknown fields,
// wrong types, non-integer numbers and trailing data are rejected, so what
// Decide sees is exactly what the sender meant. Empty or null data is an
// empty object.
func ParseCommand(commandType string, data []byte) (Command, error) {
	var (
		c   Command
		err error
	)
	switch commandType {
	case TypeCreateOrder:
		c, err = decode[CreateOrder](data)
	case TypeAddItem:
		c, err = decode[AddItem](data)
	case TypeRemoveItem:
		c, err = decode[RemoveItem](data)
	case TypeSubmitOrder:
		c, err = decode[SubmitOrder](data)
	case TypePayOrder:
		c, err = decode[PayOrder](data)
	case TypeShipOrder:
		c, err = decode[ShipOrder](data)
	case TypeDeliverOrder:
		c, err = decode[DeliverOrder](data)
	case TypeCancelOrder:
		c, err = decode[CancelOrder](data)
	default:
		return nil, fmt.Errorf("%w: %q is not one of %s", ErrUnknownCommand, commandType, strings.Join(CommandTypes(), ", "))
	}
	if err != nil {
		return nil, err
	}
	if err := c.validate(); err != nil {
		return nil, err
	}
	return c, nil
}

// ValidateCommand checks a command built in code the way ParseCommand and
// Decide do, so a client can refuse it before sending it.
func ValidateCommand(c Command) error { return c.validate() }

func decode[T Command](data []byte) (Command, error) {
	var c T
	if err := decodeStrict(data, &c); err != nil {
		return nil, err
	}
	if err := requirePresent(data, c); err != nil {
		return nil, err
	}
	return c, nil
}

// required lists the fields a sender must write, because their zero value
// is valid too (a free item, a zero amount) and so absence would pass
// unnoticed.
func required(c Command) []string {
	switch c.(type) {
	case AddItem:
		return []string{"quantity", "unitPriceCents"}
	case PayOrder:
		return []string{"amountCents"}
	}
	return nil
}

// requirePresent checks the fields of required(c), and of every item of a
// CreateOrder, are present in the JSON. data already decoded strictly.
func requirePresent(data []byte, c Command) error {
	var fields map[string]json.RawMessage
	if json.Unmarshal(data, &fields) != nil {
		return nil // empty or null data: no fields, and validate reports them
	}
	for _, f := range required(c) {
		if v, ok := fields[f]; !ok || string(v) == "null" {
			return fieldErr(f, "is required")
		}
	}
	if _, ok := c.(CreateOrder); ok && fields["items"] != nil {
		var items []map[string]json.RawMessage
		if err := json.Unmarshal(fields["items"], &items); err != nil {
			return fieldErr("items", "must be an array of objects")
		}
		for i, it := range items {
			for _, f := range required(AddItem{}) {
				if v, ok := it[f]; !ok || string(v) == "null" {
					return fieldErr(fmt.Sprintf("items[%d].%s", i, f), "is required")
				}
			}
		}
	}
	return nil
}

func decodeStrict(data []byte, v any) error {
	data = bytes.TrimSpace(data)
	if len(data) == 0 || bytes.Equal(data, []byte("null")) {
		data = []byte("{}")
	}
	if data[0] != '{' {
		return fieldErr("data", "must be a JSON object")
	}
	dec := json.NewDecoder(bytes.NewReader(data))
	dec.DisallowUnknownFields()
	if err := dec.Decode(v); err != nil {
		return jsonFieldError("data", err)
	}
	if dec.More() {
		return fieldErr("data", "has trailing content after the JSON object")
	}
	return nil
}

// jsonFieldError turns encoding/json's errors into a FieldError naming the
// field, which is what a sender needs to fix the message.
func jsonFieldError(prefix string, err error) error {
	var typeErr *json.UnmarshalTypeError
	var syntaxErr *json.SyntaxError
	switch {
	case errors.As(err, &typeErr):
		field := prefix
		if typeErr.Field != "" {
			field = typeErr.Field
		}
		return fieldErr(field, "must be %s, got JSON %s", kindName(typeErr.Type.Kind()), typeErr.Value)
	case errors.As(err, &syntaxErr):
		return fieldErr(prefix, "is not valid JSON at byte %d: %v", syntaxErr.Offset, syntaxErr)
	case strings.HasPrefix(err.Error(), "json: unknown field "):
		return fieldErr(prefix, "has an unknown field %s", strings.TrimPrefix(err.Error(), "json: unknown field "))
	default:
		return fieldErr(prefix, "is not valid JSON: %v", err)
	}
}

func kindName(k reflect.Kind) string {
	switch k {
	case reflect.Int64:
		return "an integer"
	case reflect.String:
		return "a string"
	case reflect.Slice:
		return "an array"
	case reflect.Struct:
		return "an object"
	default:
		return k.String()
	}
}

func (c CreateOrder) validate() error {
	if err := ValidateID("customerId", c.CustomerID); err != nil {
		return err
	}
	if c.Currency != "" && !ValidCurrency(c.Currency) {
		return fieldErr("currency", "%q is not an ISO 4217 currency code", c.Currency)
	}
	if len(c.Items) > MaxItems {
		return fieldErr("items", "has %d entries; an order holds at most %d distinct items", len(c.Items), MaxItems)
	}
	for i, it := range c.Items {
		if err := it.validate(); err != nil {
			return fieldErr(fmt.Sprintf("items[%d]", i), "%v", err)
		}
	}
	return nil
}

func (c AddItem) validate() error {
	if err := ValidateID("productId", c.ProductID); err != nil {
		return err
	}
	if c.Quantity < 1 || c.Quantity > MaxQuantity {
		return fieldErr("quantity", "is %d; it must be between 1 and %d", c.Quantity, MaxQuantity)
	}
	if c.UnitPriceCents < 0 {
		return fieldErr("unitPriceCents", "is %d; it must not be negative", c.UnitPriceCents)
	}
	if _, ok := mulCents(c.Quantity, c.UnitPriceCents); !ok {
		return fieldErr("unitPriceCents", "%d times quantity %d overflows a 64-bit cent amount", c.UnitPriceCents, c.Quantity)
	}
	return nil
}

func (c RemoveItem) validate() error { return ValidateID("productId", c.ProductID) }

func (SubmitOrder) validate() error { return nil }

func (c PayOrder) validate() error {
	if err := ValidateID("paymentId", c.PaymentID); err != nil {
		return err
	}
	if c.AmountCents < 0 {
		return fieldErr("amountCents", "is %d; it must not be negative", c.AmountCents)
	}
	return validateText("method", c.Method)
}

func (c ShipOrder) validate() error {
	if err := validateText("trackingNumber", c.TrackingNumber); err != nil {
		return err
	}
	return validateText("carrier", c.Carrier)
}

func (DeliverOrder) validate() error { return nil }

func (c CancelOrder) validate() error { return validateText("reason", c.Reason) }

func validateText(field, s string) error {
	if strings.TrimSpace(s) == "" {
		return fieldErr(field, "is required")
	}
	if !utf8.ValidString(s) {
		return fieldErr(field, "is not valid UTF-8")
	}
	if n := utf8.RuneCountInString(s); n > MaxTextLength {
		return fieldErr(field, "is %d characters long; the limit is %d", n, MaxTextLength)
	}
	for _, r := range s {
		if r < 0x20 || r == 0x7f {
			return fieldErr(field, "contains control character %U", r)
		}
	}
	return nil
}

// mulCents multiplies a quantity by a unit price, reporting overflow.
func mulCents(q, p int64) (int64, bool) {
	if q != 0 && p > math.MaxInt64/q {
		return 0, false
	}
	return q * p, true
}

// addCents adds two non-negative cent amounts, reporting overflow.
func addCents(a, b int64) (int64, bool) {
	if a > math.MaxInt64-b {
		return 0, false
	}
	return a + b, true
}
