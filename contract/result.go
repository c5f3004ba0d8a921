package contract

// Status says whether a command was accepted.
type Status string

// Result statuses.
const (
	StatusAccepted Status = "accepted"
	StatusRejected Status = "rejected"
)

// Code classifies why a command was rejected.
type Code string

// Error codes of rejected results.
const (
	// CodeInvalidCommand: malformed, missing or invalid fields, or a
	// subject that does not match the body.
	CodeInvalidCommand Code = "invalid_command"
	// CodeUnknownCommand: a command type the service does not handle.
	CodeUnknownCommand Code = "unknown_command"
	// CodeNotFound: the command needs an order that does not exist.
	CodeNotFound Code = "not_found"
	// CodeAlreadyExists: CreateOrder for an order that exists.
	CodeAlreadyExists Code = "already_exists"
	// CodeInvalidState: the order's state forbids the command.
	CodeInvalidState Code = "invalid_state"
	// CodeConflict: concurrent appends won every retry.
	CodeConflict Code = "conflict"
	// CodeInternal: the service failed; the command changed nothing.
	CodeInternal Code = "internal"
)

// Result is the outcome of one command, stored on orders.results.<commandId>.
type Result struct {
	CommandID      string       `json:"commandId"`
	OrderID        string       `json:"orderId,omitempty"`
	Status         Status       `json:"status"`
	Version        int64        `json:"version,omitempty"`
	EventIDs       []string     `json:"eventIds,omitempty"`
	StreamSequence uint64       `json:"streamSequence,omitempty"`
	Error          *ResultError `json:"error,omitempty"`
}

// ResultError says why a command was rejected.
type ResultError struct {
	Code    Code   `json:"code"`
	Message string `json:"message"`
}
