package order

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"math"
	"reflect"
	"slices"
	"strconv"
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
	return c, nil
}

// ValidateCommand checks a command built in code the way ParseCommand and
// Decide do, so a client can refuse it before sending it.
func ValidateCommand(c Command) error { return c.validate() }

// decode reads data into a T and checks it, reporting every problem at
// once: unknown fields (naming the known ones), values of the wrong type,
// required fields that are missing, and invalid values, each field once.
func decode[T Command](data []byte) (Command, error) {
	var c T
	fields, err := object(data)
	if err != nil {
		return nil, err
	}
	d := &decoder{shapeless: map[string]bool{}}
	d.fields(fields, reflect.ValueOf(&c).Elem(), "", c.CommandType())
	d.missing(fields, required(c), "")
	// The values that decoded are checked too; a field reported above, or
	// inside a part that has not the right shape, is not reported again.
	reported := map[string]bool{}
	for _, p := range d.problems {
		reported[p.Field] = true
	}
	for _, p := range flatten(c.validate()) {
		if !reported[p.Field] && !d.inShapeless(p.Field) {
			d.problems = append(d.problems, p)
		}
	}
	if err := join(d.problems); err != nil {
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

// object splits command data, a JSON object, into its fields. Empty or null
// data is an empty object.
func object(data []byte) (map[string]json.RawMessage, error) {
	data = bytes.TrimSpace(data)
	if len(data) == 0 || bytes.Equal(data, []byte("null")) {
		return map[string]json.RawMessage{}, nil
	}
	if data[0] != '{' {
		return nil, fieldErr("data", "must be a JSON object")
	}
	dec := json.NewDecoder(bytes.NewReader(data))
	var fields map[string]json.RawMessage
	if err := dec.Decode(&fields); err != nil {
		return nil, jsonFieldError("data", err)
	}
	if dec.More() {
		return nil, fieldErr("data", "has trailing content after the JSON object")
	}
	return fields, nil
}

// decoder decodes a command's fields one by one, collecting every problem.
type decoder struct {
	problems []*FieldError
	// shapeless holds the fields that are not the object or list they
	// should be: what is inside them is not checked.
	shapeless map[string]bool
}

// fields decodes fields into the struct v: every unknown field and every
// value of the wrong type is reported; a list of structs (CreateOrder's
// items) is decoded element by element. prefix comes before the field
// names; what names the struct in the message about unknown fields.
func (d *decoder) fields(fields map[string]json.RawMessage, v reflect.Value, prefix, what string) {
	var known []string
	byName := map[string]reflect.Value{}
	for i := range v.NumField() {
		name, _, _ := strings.Cut(v.Type().Field(i).Tag.Get("json"), ",")
		known = append(known, name)
		byName[name] = v.Field(i)
	}
	var unknown []string
	for name := range fields {
		if _, ok := byName[name]; !ok {
			unknown = append(unknown, strconv.Quote(name))
		}
	}
	if len(unknown) > 0 {
		slices.Sort(unknown)
		takes := what + " takes no data"
		if len(known) > 0 {
			takes = what + " takes " + strings.Join(known, ", ")
		}
		field, noun := strings.TrimSuffix(prefix, "."), "an unknown field"
		if field == "" {
			field = "data"
		}
		if len(unknown) > 1 {
			noun = "unknown fields"
		}
		d.problems = append(d.problems, fieldErr(field, "has %s %s; %s", noun, strings.Join(unknown, ", "), takes))
	}
	for _, name := range known {
		raw, ok := fields[name]
		if !ok || string(raw) == "null" {
			continue
		}
		f := byName[name]
		if f.Kind() == reflect.Slice && f.Type().Elem().Kind() == reflect.Struct {
			d.list(raw, f, prefix+name)
			continue
		}
		if err := json.Unmarshal(raw, f.Addr().Interface()); err != nil {
			d.problems = append(d.problems, jsonFieldError(prefix+name, err))
		}
	}
}

// list decodes a JSON array of objects into the slice f.
func (d *decoder) list(raw json.RawMessage, f reflect.Value, field string) {
	var elems []json.RawMessage
	if err := json.Unmarshal(raw, &elems); err != nil {
		d.shapeless[field] = true
		d.problems = append(d.problems, fieldErr(field, "must be an array of objects"))
		return
	}
	f.Set(reflect.MakeSlice(f.Type(), len(elems), len(elems)))
	for i, e := range elems {
		elem := fmt.Sprintf("%s[%d]", field, i)
		var fields map[string]json.RawMessage
		if err := json.Unmarshal(e, &fields); err != nil || fields == nil {
			d.shapeless[elem] = true
			d.problems = append(d.problems, fieldErr(elem, "must be an object"))
			continue
		}
		d.fields(fields, f.Index(i), elem+".", "an item")
		if c, ok := f.Index(i).Interface().(Command); ok {
			d.missing(fields, required(c), elem+".")
		}
	}
}

// missing reports the fields of names that fields lacks or holds null.
func (d *decoder) missing(fields map[string]json.RawMessage, names []string, prefix string) {
	for _, f := range names {
		if v, ok := fields[f]; !ok || string(v) == "null" {
			d.problems = append(d.problems, fieldErr(prefix+f, "is required"))
		}
	}
}

// inShapeless reports whether field lies inside a shapeless one.
func (d *decoder) inShapeless(field string) bool {
	for f := range d.shapeless {
		if strings.HasPrefix(field, f+".") || strings.HasPrefix(field, f+"[") {
			return true
		}
	}
	return false
}

// jsonFieldError turns encoding/json's errors into a FieldError naming the
// field, which is what a sender needs to fix the message.
func jsonFieldError(field string, err error) *FieldError {
	var typeErr *json.UnmarshalTypeError
	var syntaxErr *json.SyntaxError
	switch {
	case errors.As(err, &typeErr):
		return fieldErr(field, "must be %s, got JSON %s", kindName(typeErr.Type.Kind()), typeErr.Value)
	case errors.As(err, &syntaxErr):
		return fieldErr(field, "is not valid JSON at byte %d: %v", syntaxErr.Offset, syntaxErr)
	default:
		return fieldErr(field, "is not valid JSON: %v", err)
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
	case reflect.Struct, reflect.Map:
		return "an object"
	default:
		return k.String()
	}
}

func (c CreateOrder) validate() error {
	problems := []error{ValidateID("customerId", c.CustomerID)}
	if c.Currency != "" && !ValidCurrency(c.Currency) {
		problems = append(problems, fieldErr("currency", "%q is not an ISO 4217 currency code", c.Currency))
	}
	if len(c.Items) > MaxItems {
		problems = append(problems, fieldErr("items", "has %d entries; an order holds at most %d distinct items", len(c.Items), MaxItems))
	}
	for i, it := range c.Items {
		for _, p := range flatten(it.validate()) {
			problems = append(problems, fieldErr(fmt.Sprintf("items[%d].%s", i, p.Field), "%s", p.Reason))
		}
	}
	return join(problems)
}

func (c AddItem) validate() error {
	problems := []error{ValidateID("productId", c.ProductID)}
	quantityOK := c.Quantity >= 1 && c.Quantity <= MaxQuantity
	if !quantityOK {
		problems = append(problems, fieldErr("quantity", "is %d; it must be between 1 and %d", c.Quantity, MaxQuantity))
	}
	if c.UnitPriceCents < 0 {
		problems = append(problems, fieldErr("unitPriceCents", "is %d; it must not be negative", c.UnitPriceCents))
	} else if _, ok := mulCents(c.Quantity, c.UnitPriceCents); quantityOK && !ok {
		problems = append(problems, fieldErr("unitPriceCents", "%d times quantity %d overflows a 64-bit cent amount", c.UnitPriceCents, c.Quantity))
	}
	return join(problems)
}

func (c RemoveItem) validate() error { return ValidateID("productId", c.ProductID) }

func (SubmitOrder) validate() error { return nil }

func (c PayOrder) validate() error {
	problems := []error{ValidateID("paymentId", c.PaymentID), validateText("method", c.Method)}
	if c.AmountCents < 0 {
		problems = append(problems, fieldErr("amountCents", "is %d; it must not be negative", c.AmountCents))
	}
	return join(problems)
}

func (c ShipOrder) validate() error {
	return join([]error{validateText("trackingNumber", c.TrackingNumber), validateText("carrier", c.Carrier)})
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
