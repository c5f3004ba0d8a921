package contract

// The orders-query service answers requests about an order from its events
// alone: a NATS micro service (discoverable with `nats micro ls`), replies
// in JSON, errors as micro errors: the Nats-Service-Error-Code header is
// 400 for a bad request, 404 for an order or a version that does not exist,
// 500 otherwise, and Nats-Service-Error says what was wrong.
const (
	QueryService        = "orders-query"
	QueryServiceVersion = "1.0.0"
	QueryStateSubject   = "orders.query.state"
	QueryHistorySubject = "orders.query.history"
)

// Headers of a query's error reply (those of NATS micro).
const (
	QueryErrorCodeHeader = "Nats-Service-Error-Code"
	QueryErrorHeader     = "Nats-Service-Error"
)

// Query error codes, in the Nats-Service-Error-Code header.
const (
	QueryBadRequest = 400
	QueryNotFound   = 404
	QueryFailed     = 500
)

// StateQuery asks for an order's state: now, as of a version (at least 1,
// at most the order's), or as of a time; not both.
type StateQuery struct {
	OrderID string `json:"orderId"`
	Version int64  `json:"version,omitempty"`
	At      *Time  `json:"at,omitempty"`
}

// OrderState is an order as its events up to Version made it.
type OrderState struct {
	ID             string      `json:"id"`
	CustomerID     string      `json:"customerId,omitempty"`
	Currency       string      `json:"currency,omitempty"`
	Status         string      `json:"status,omitempty"`
	Items          []OrderItem `json:"items,omitempty"`
	TotalCents     int64       `json:"totalCents"`
	PaymentID      string      `json:"paymentId,omitempty"`
	PaidCents      int64       `json:"paidCents,omitempty"`
	PaymentMethod  string      `json:"paymentMethod,omitempty"`
	TrackingNumber string      `json:"trackingNumber,omitempty"`
	Carrier        string      `json:"carrier,omitempty"`
	CancelReason   string      `json:"cancelReason,omitempty"`
	Version        int64       `json:"version"`
}

// OrderItem is one product line of an order.
type OrderItem struct {
	ProductID      string `json:"productId"`
	Quantity       int64  `json:"quantity"`
	UnitPriceCents int64  `json:"unitPriceCents"`
}

// HistoryQuery asks for a page of an order's events: those after
// AfterVersion (0: from the first), at most Limit of them (1 to
// MaxHistoryLimit; DefaultHistoryLimit if 0).
type HistoryQuery struct {
	OrderID      string `json:"orderId"`
	AfterVersion int64  `json:"afterVersion,omitempty"`
	Limit        int    `json:"limit,omitempty"`
}

// Page sizes of HistoryQuery.
const (
	DefaultHistoryLimit = 100
	MaxHistoryLimit     = 500
)

// History is a page of an order's events in version order, upcast to the
// current schema versions; More says whether events follow the page.
type History struct {
	Events []Event `json:"events"`
	More   bool    `json:"more"`
}
