package es

import (
	"context"
	"errors"
	"fmt"
	"testing"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
)

// TestAppendErrorClassification pins how append failures are sorted: both
// wrong-last-sequence codes are conflicts (10164 is what replicated streams
// report), nobody-listening means not stored, and anything that may have
// reached the stream is an unknown outcome.
func TestAppendErrorClassification(t *testing.T) {
	tests := []struct {
		err  error
		want error
	}{
		{&jetstream.APIError{ErrorCode: 10071, Code: 400}, ErrConflict},
		{fmt.Errorf("nats: %w", &jetstream.APIError{ErrorCode: 10164, Code: 400}), ErrConflict},
		{context.DeadlineExceeded, ErrUnknownOutcome},
		{nats.ErrTimeout, ErrUnknownOutcome},
		{nats.ErrConnectionClosed, ErrUnknownOutcome},
		{jetstream.ErrNoStreamResponse, nil},
		{&jetstream.APIError{ErrorCode: 10039, Code: 503}, nil},
	}
	for _, tt := range tests {
		got := appendError("ord-1", tt.err)
		for _, sentinel := range []error{ErrConflict, ErrUnknownOutcome} {
			if errors.Is(got, sentinel) != (sentinel == tt.want) {
				t.Errorf("appendError(%v) = %v; errors.Is(%v) = %v", tt.err, got, sentinel, errors.Is(got, sentinel))
			}
		}
	}
}
