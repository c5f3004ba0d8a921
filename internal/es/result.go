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

// PublishFirstResult stores r on subject unless a result is stored there
// already: a command has one outcome, the first. It returns the outcome
// that stands, and whether it is r.
func (s *Store) PublishFirstResult(ctx context.Context, subject string, r Result) (Result, bool, error) {
	body, err := json.Marshal(r)
	if err != nil {
		return Result{}, false, fmt.Errorf("encode result of %s: %w", r.CommandID, err)
	}
	m := nats.NewMsg(subject)
	m.Data = body
	m.Header.Set(jetstream.ExpectedLastSubjSeqHeader, "0")
	tracing.Inject(ctx, m.Header)
	_, err = s.js.PublishMsg(ctx, m)
	if err == nil {
		return r, true, nil
	}
	if !errors.Is(appendError(r.CommandID, err), ErrConflict) {
		return Result{}, false, fmt.Errorf("publish result of %s: %w", r.CommandID, err)
	}
	stored, found, err := s.lookupResult(ctx, subject, leaderLastMsg)
	if err != nil || !found {
		return Result{}, false, fmt.Errorf("read the result stored before that of %s: %w", r.CommandID, err)
	}
	return stored, false, nil
}

// LookupResult returns the stored outcome of a command, if there is one,
// by direct get: on a replicated stream a follower may answer and miss a
// result stored a moment ago.
func (s *Store) LookupResult(ctx context.Context, commandID string) (Result, bool, error) {
	return s.lookupResult(ctx, ResultSubject(commandID), directLastMsg)
}

// LookupResultFromLeader is LookupResult answered by the stream leader,
// which has every acknowledged result: for redelivered commands, whose
// outcome may have been stored just before.
func (s *Store) LookupResultFromLeader(ctx context.Context, commandID string) (Result, bool, error) {
	return s.lookupResult(ctx, ResultSubject(commandID), leaderLastMsg)
}

// lastMsgGetter is directLastMsg or leaderLastMsg.
type lastMsgGetter func(ctx context.Context, js jetstream.JetStream, stream, subject string) (*jetstream.RawStreamMsg, error)

func (s *Store) lookupResult(ctx context.Context, subject string, get lastMsgGetter) (Result, bool, error) {
	m, err := get(ctx, s.js, ResultsStream, subject)
	if errors.Is(err, jetstream.ErrMsgNotFound) {
		return Result{}, false, nil
	}
	if err != nil {
		return Result{}, false, fmt.Errorf("look up result on %s: %w", subject, err)
	}
	var r Result
	if err := json.Unmarshal(m.Data, &r); err != nil {
		return Result{}, false, fmt.Errorf("decode result on %s: %w", subject, err)
	}
	return r, true, nil
}
