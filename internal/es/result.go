package es

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/jetsource/jetsource/contract"
	"github.com/jetsource/jetsource/internal/tracing"
)

// PublishFirstResult stores r on subject unless a result is stored there
// already: a command has one outcome, the first. It returns the outcome
// that stands, and whether it is r.
func (s *Store) PublishFirstResult(ctx context.Context, subject string, r contract.Result) (contract.Result, bool, error) {
	m := &nats.Msg{Subject: subject, Data: appendResult(make([]byte, 0, 256), r), Header: nats.Header{jetstream.ExpectedLastSubjSeqHeader: {"0"}}}
	tracing.Inject(ctx, m.Header)
	_, err := s.js.PublishMsg(ctx, m)
	if err == nil {
		return r, true, nil
	}
	if !errors.Is(appendError(r.CommandID, err), ErrConflict) {
		return contract.Result{}, false, fmt.Errorf("publish result of %s: %w", r.CommandID, err)
	}
	stored, found, err := s.lookupResult(ctx, subject, leaderLastMsg)
	if err != nil || !found {
		return contract.Result{}, false, fmt.Errorf("read the result stored before that of %s: %w", r.CommandID, err)
	}
	return stored, false, nil
}

// LookupResult returns the stored outcome of a command, if there is one,
// by direct get: on a replicated stream a follower may answer and miss a
// result stored a moment ago.
func (s *Store) LookupResult(ctx context.Context, commandID string) (contract.Result, bool, error) {
	return s.lookupResult(ctx, contract.ResultSubject(commandID), directLastMsg)
}

// LookupResultFromLeader is LookupResult answered by the stream leader,
// which has every acknowledged result: for redelivered commands, whose
// outcome may have been stored just before.
func (s *Store) LookupResultFromLeader(ctx context.Context, commandID string) (contract.Result, bool, error) {
	return s.lookupResult(ctx, contract.ResultSubject(commandID), leaderLastMsg)
}

// lastMsgGetter is directLastMsg or leaderLastMsg.
type lastMsgGetter func(ctx context.Context, js jetstream.JetStream, stream, subject string) (*jetstream.RawStreamMsg, error)

func (s *Store) lookupResult(ctx context.Context, subject string, get lastMsgGetter) (contract.Result, bool, error) {
	m, err := get(ctx, s.js, contract.ResultsStream, subject)
	if errors.Is(err, jetstream.ErrMsgNotFound) {
		return contract.Result{}, false, nil
	}
	if err != nil {
		return contract.Result{}, false, fmt.Errorf("look up result on %s: %w", subject, err)
	}
	var r contract.Result
	if err := json.Unmarshal(m.Data, &r); err != nil {
		return contract.Result{}, false, fmt.Errorf("decode result on %s: %w", subject, err)
	}
	return r, true, nil
}
