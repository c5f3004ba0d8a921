package es

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"strconv"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"github.com/synadia-io/orbit.go/jetstreamext"

	"github.com/jetsource/jetsource/contract"
	"github.com/jetsource/jetsource/internal/tracing"
)

var (
	// ErrConflict means the order's subject moved past the expected
	// sequence: another append won. Reload and decide again.
	ErrConflict = errors.New("concurrent append conflict")
	// ErrUnknownOutcome means an append may or may not have been stored
	// (timeout, lost acknowledgement, dropped connection). Reload from the
	// stream leader and look for the appended event ids before retrying.
	ErrUnknownOutcome = errors.New("append outcome unknown")
	// ErrCorrupt means stored events break the store's invariants (a gap
	// or repeat in versions, an undecodable body).
	ErrCorrupt = errors.New("corrupt event history")
)

// noRetry leaves retrying an append to the caller, who knows what a failure
// means; one value, since building the option allocates.
var noRetry = jetstream.WithRetryAttempts(0)

// MaxBatch is the most events one append stores atomically (the server's
// atomic batch limit).
const MaxBatch = 1000

// readBatch is how many events one direct batch get asks for.
const readBatch = 1000

// Store appends and reads events of the ORDERS_EVENTS stream. Reads use
// direct gets, so loading an order never creates a consumer.
type Store struct {
	js         jetstream.JetStream
	partitions int
}

// NewStore returns a store for streams created with the given partition
// count.
func NewStore(js jetstream.JetStream, partitions int) *Store {
	return &Store{js: js, partitions: partitions}
}

// Append stores events on the aggregate's subject if the subject's last
// sequence is still expectedSeq (0: no events yet). Several events go in
// one atomic batch: all are stored or none. It returns the sequence of the
// last event stored.
func (s *Store) Append(ctx context.Context, aggregateID string, expectedSeq uint64, events []contract.Event) (uint64, error) {
	if len(events) == 0 {
		return 0, errors.New("append: no events")
	}
	if len(events) > MaxBatch {
		return 0, fmt.Errorf("append %d events to %s: at most %d fit one atomic batch", len(events), aggregateID, MaxBatch)
	}
	subject := contract.EventSubject(aggregateID, s.partitions)
	msgs := make([]*nats.Msg, len(events))
	for i, e := range events {
		m := &nats.Msg{Subject: subject, Data: appendEvent(make([]byte, 0, 512), e), Header: nats.Header{
			jetstream.MsgIDHeader:           {e.ID},
			contract.HeaderEventType:        {e.Type},
			contract.HeaderAggregateVersion: {strconv.FormatInt(e.Version, 10)},
		}}
		tracing.Inject(ctx, m.Header)
		msgs[i] = m
	}
	msgs[0].Header[jetstream.ExpectedLastSubjSeqHeader] = []string{strconv.FormatUint(expectedSeq, 10)}

	if len(msgs) == 1 {
		ack, err := s.js.PublishMsg(ctx, msgs[0], noRetry)
		if err != nil {
			return 0, appendError(aggregateID, err)
		}
		if ack.Duplicate {
			return 0, fmt.Errorf("append to %s: event %s was already stored: %w", aggregateID, events[0].ID, ErrUnknownOutcome)
		}
		return ack.Sequence, nil
	}
	ack, err := jetstreamext.PublishMsgBatch(ctx, s.js, msgs, jetstreamext.BatchFlowControl{})
	if err != nil {
		return 0, appendError(aggregateID, err)
	}
	return ack.Sequence, nil
}

// appendError sorts a failed append into conflict (not stored, retry after
// reload), unknown outcome (maybe stored), or a definite failure.
func appendError(aggregateID string, err error) error {
	var apiErr *jetstream.APIError
	switch {
	case errors.As(err, &apiErr):
		switch apiErr.ErrorCode {
		case jetstream.JSErrCodeStreamWrongLastSequence, jetstream.JSErrCodeStreamWrongLastSequenceConstant:
			return fmt.Errorf("append to %s: %w: %v", aggregateID, ErrConflict, err)
		}
		return fmt.Errorf("append to %s: %w", aggregateID, err)
	case errors.Is(err, jetstream.ErrNoStreamResponse), errors.Is(err, nats.ErrNoResponders):
		// Nobody received the message, so nothing was stored.
		return fmt.Errorf("append to %s: event stream unavailable: %w", aggregateID, err)
	default:
		return fmt.Errorf("append to %s: %w: %v", aggregateID, ErrUnknownOutcome, err)
	}
}

// Read returns the aggregate's events stored after afterSeq, oldest first,
// upcast to the current schema versions. It uses direct batch gets; on a
// replicated stream a follower may answer, so right after a write the
// newest events can be missing: callers that must see them compare with
// LeaderLastSequence.
func (s *Store) Read(ctx context.Context, aggregateID string, afterSeq uint64) ([]contract.Event, error) {
	subject := contract.EventSubject(aggregateID, s.partitions)
	var events []contract.Event
	next := afterSeq + 1
	for {
		msgs, err := jetstreamext.GetBatch(ctx, s.js, contract.EventsStream, readBatch,
			jetstreamext.GetBatchSeq(next), jetstreamext.GetBatchSubject(subject))
		if err != nil {
			return nil, fmt.Errorf("read events of %s: %w", aggregateID, err)
		}
		pending := uint64(0)
		got := 0
		for m, err := range msgs {
			if errors.Is(err, jetstreamext.ErrNoMessages) {
				break
			}
			if err != nil {
				return nil, fmt.Errorf("read events of %s: %w", aggregateID, err)
			}
			e, err := s.decode(m)
			if err != nil {
				return nil, err
			}
			events = append(events, e)
			next = m.Sequence + 1
			pending, _ = strconv.ParseUint(m.Header.Get("Nats-Num-Pending"), 10, 64)
			got++
		}
		if got == 0 || pending == 0 {
			return events, nil
		}
	}
}

func (s *Store) decode(m *jetstream.RawStreamMsg) (contract.Event, error) {
	e, err := contract.DecodeEvent(m.Subject, m.Sequence, m.Data)
	if err == nil {
		e, err = contract.Upcast(e)
	}
	if err != nil {
		return contract.Event{}, fmt.Errorf("%w: %w", ErrCorrupt, err)
	}
	return e, nil
}

// LeaderLastSequence asks the stream leader for the sequence of the aggregate's
// newest event (0 if it has none). Unlike direct gets, the leader's answer
// includes every acknowledged write.
func (s *Store) LeaderLastSequence(ctx context.Context, aggregateID string) (uint64, error) {
	m, err := leaderLastMsg(ctx, s.js, contract.EventsStream, contract.EventSubject(aggregateID, s.partitions))
	if errors.Is(err, jetstream.ErrMsgNotFound) {
		return 0, nil
	}
	if err != nil {
		return 0, fmt.Errorf("last sequence of %s: %w", aggregateID, err)
	}
	return m.Sequence, nil
}

// directLastSequence is the sequence of the aggregate's newest event by
// direct get: cheap, but on a replicated stream possibly behind
// LeaderLastSequence.
func (s *Store) directLastSequence(ctx context.Context, aggregateID string) (uint64, error) {
	m, err := directLastMsg(ctx, s.js, contract.EventsStream, contract.EventSubject(aggregateID, s.partitions))
	if errors.Is(err, jetstream.ErrMsgNotFound) {
		return 0, nil
	}
	if err != nil {
		return 0, fmt.Errorf("newest event of %s: %w", aggregateID, err)
	}
	return m.Sequence, nil
}

// ReadFromLeader returns the aggregate's events after afterSeq as the
// stream leader has them, one get per event. It is the slow, exact path for
// checks after an ambiguous append, when a follower may lag.
func (s *Store) ReadFromLeader(ctx context.Context, aggregateID string, afterSeq uint64) ([]contract.Event, error) {
	subject := contract.EventSubject(aggregateID, s.partitions)
	var events []contract.Event
	for seq := afterSeq + 1; ; {
		m, err := leaderRequest(ctx, s.js, contract.EventsStream, apiMsgGetRequest{Seq: seq, NextFor: subject})
		if errors.Is(err, jetstream.ErrMsgNotFound) {
			return events, nil
		}
		if err != nil {
			return nil, fmt.Errorf("read events of %s from the leader: %w", aggregateID, err)
		}
		e, err := s.decode(m)
		if err != nil {
			return nil, err
		}
		events = append(events, e)
		seq = m.Sequence + 1
	}
}

type apiMsgGetRequest struct {
	Seq     uint64 `json:"seq,omitempty"`
	LastFor string `json:"last_by_subj,omitempty"`
	NextFor string `json:"next_by_subj,omitempty"`
}

type apiMsgGetResponse struct {
	Type    string              `json:"type"`
	Error   *jetstream.APIError `json:"error,omitempty"`
	Message *struct {
		Subject  string    `json:"subject"`
		Sequence uint64    `json:"seq"`
		Header   []byte    `json:"hdrs,omitempty"`
		Data     []byte    `json:"data,omitempty"`
		Time     time.Time `json:"time"`
	} `json:"message,omitempty"`
}

func leaderLastMsg(ctx context.Context, js jetstream.JetStream, stream, subject string) (*jetstream.RawStreamMsg, error) {
	return leaderRequest(ctx, js, stream, apiMsgGetRequest{LastFor: subject})
}

// LeaderMsg reads the message at seq of stream from the stream's leader,
// which has every acknowledged message, unlike a replica answering a direct
// get. It returns jetstream.ErrMsgNotFound if there is none.
func LeaderMsg(ctx context.Context, js jetstream.JetStream, stream string, seq uint64) (*jetstream.RawStreamMsg, error) {
	return leaderRequest(ctx, js, stream, apiMsgGetRequest{Seq: seq})
}

// leaderRequest is the non-direct message get, answered by the stream leader.
// jetstream.Stream.GetMsg switches to direct gets whenever the stream
// allows them, so it cannot be used for this.
func leaderRequest(ctx context.Context, js jetstream.JetStream, stream string, req apiMsgGetRequest) (*jetstream.RawStreamMsg, error) {
	body, err := json.Marshal(req)
	if err != nil {
		return nil, err
	}
	prefix := js.Options().APIPrefix
	if prefix == "" {
		prefix = jetstream.DefaultAPIPrefix
	}
	reply, err := js.Conn().RequestWithContext(ctx, prefix+"STREAM.MSG.GET."+stream, body)
	if err != nil {
		return nil, err
	}
	var resp apiMsgGetResponse
	if err := json.Unmarshal(reply.Data, &resp); err != nil {
		return nil, fmt.Errorf("decode message get response: %w", err)
	}
	if resp.Error != nil {
		if resp.Error.ErrorCode == jetstream.JSErrCodeMessageNotFound {
			return nil, jetstream.ErrMsgNotFound
		}
		return nil, resp.Error
	}
	if resp.Message == nil {
		return nil, jetstream.ErrInvalidJetStreamResponse
	}
	var hdr nats.Header
	if len(resp.Message.Header) > 0 {
		if hdr, err = nats.DecodeHeadersMsg(resp.Message.Header); err != nil {
			return nil, err
		}
	}
	return &jetstream.RawStreamMsg{
		Subject:  resp.Message.Subject,
		Sequence: resp.Message.Sequence,
		Header:   hdr,
		Data:     resp.Message.Data,
		Time:     resp.Message.Time,
	}, nil
}
