package es

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/jetsource/jetsource/internal/tracing"
)

// Result statuses.
const (
	StatusAccepted = "accepted"
	StatusRejected = "rejected"
)

// Wire error codes of rejected results (DESIGN section 4).
const (
	CodeInvalidCommand = "invalid_command"
	CodeUnknownCommand = "unknown_command"
	CodeNotFound       = "not_found"
	CodeAlreadyExists  = "already_exists"
	CodeInvalidState   = "invalid_state"
	CodeConflict       = "conflict"
	CodeInternal       = "internal"
)

// Result is the outcome of one command, stored on orders.results.<commandId>.
type Result struct {
	CommandID      string       `json:"commandId"`
	OrderID        string       `json:"orderId,omitempty"`
	Status         string       `json:"status"`
	Version        int64        `json:"version,omitempty"`
	EventIDs       []string     `json:"eventIds,omitempty"`
	StreamSequence uint64       `json:"streamSequence,omitempty"`
	Error          *ResultError `json:"error,omitempty"`
}

// ResultError says why a command was rejected.
type ResultError struct {
	Code    string `json:"code"`
	Message string `json:"message"`
}

// PublishResult stores a command's outcome on subject and waits for the
// stream's acknowledgement.
func (s *Store) PublishResult(ctx context.Context, subject string, r Result) error {
	body, err := json.Marshal(r)
	if err != nil {
		return fmt.Errorf("encode result of %s: %w", r.CommandID, err)
	}
	m := nats.NewMsg(subject)
	m.Data = body
	tracing.Inject(ctx, m.Header)
	if _, err := s.js.PublishMsg(ctx, m); err != nil {
		return fmt.Errorf("publish result of %s: %w", r.CommandID, err)
	}
	return nil
}

// LookupResult returns the stored outcome of a command, if there is one.
func (s *Store) LookupResult(ctx context.Context, commandID string) (Result, bool, error) {
	m, err := directLastMsg(ctx, s.js, ResultsStream, ResultSubject(commandID))
	if errors.Is(err, jetstream.ErrMsgNotFound) {
		return Result{}, false, nil
	}
	if err != nil {
		return Result{}, false, fmt.Errorf("look up result of %s: %w", commandID, err)
	}
	var r Result
	if err := json.Unmarshal(m.Data, &r); err != nil {
		return Result{}, false, fmt.Errorf("decode result of %s: %w", commandID, err)
	}
	return r, true, nil
}
