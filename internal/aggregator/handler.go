package aggregator

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"runtime/debug"
	"time"
	"unicode/utf8"

	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/trace"

	"github.com/jetsource/jetsource/contract"
	"github.com/jetsource/jetsource/internal/es"
	"github.com/jetsource/jetsource/internal/order"
)

// handler turns one stored command message into its outcome.
type handler struct {
	store      *es.Store
	repo       *es.Repository[Aggregate]
	maxRetries int
	now        func() time.Time
	log        *slog.Logger
	obs        Observer
	tracer     trace.Tracer
	// hook, if set, is called at named points of handling; tests use it to
	// inject crashes, panics and lost acknowledgements where production
	// code has no seam. An error returned at "appended" replaces the
	// append's success.
	hook func(point, commandID string) error
}

func (h *handler) at(point, commandID string) error {
	if h.hook == nil {
		return nil
	}
	return h.hook(point, commandID)
}

// outcome is a command's result and where to publish it.
type outcome struct {
	subject string
	result  contract.Result
	// correlationID is the command's, for the logs.
	correlationID string
	// replayed is set when the result was established earlier (a redelivery
	// or a re-sent command id).
	replayed bool
	// stored is set when the result is stored already.
	stored bool
}

// handle establishes the outcome of a stored command message. An error means
// it could not (the event store is unreachable, say): the message must not
// be acknowledged, and handling it again later is safe. A panic while
// handling becomes an internal rejection, so a poison message cannot block
// its partition.
//
// A redelivered command may have an outcome stored a moment ago, which a
// lagging replica would not show yet: its earlier outcome is looked up on
// the stream leader.
func (h *handler) handle(ctx context.Context, subject string, header map[string][]string, body []byte, sequence uint64, redelivered bool) (out outcome, err error) {
	in := parse(subject, header, body, sequence)
	defer func() {
		if p := recover(); p != nil {
			h.log.Error("command handler panicked", "command_id", in.commandID, "order_id", in.env.OrderID,
				"correlation_id", in.env.Metadata.CorrelationID, "panic", fmt.Sprint(p), "stack", string(debug.Stack()))
			out, err = rejected(in, fmt.Errorf("%w: the command crashed the handler", errInternal)), nil
		}
	}()
	if in.commandID != "" {
		lookup := h.store.LookupResult
		if redelivered {
			lookup = h.store.LookupResultFromLeader
		}
		prior, found, err := lookup(ctx, in.commandID)
		if err != nil {
			return outcome{}, err
		}
		if found {
			return outcome{subject: in.resultSubject, result: prior, replayed: true, stored: true}, nil
		}
	}
	if in.err != nil {
		return rejected(in, in.err), nil
	}
	out, err = h.execute(ctx, in)
	if errors.Is(err, es.ErrCorrupt) {
		// Retrying cannot repair a history this build cannot read; it
		// would only hold up every later command of the partition.
		h.log.Error("order history unreadable; command rejected", "command_id", in.commandID, "order_id", in.env.OrderID,
			"correlation_id", in.env.Metadata.CorrelationID, "error", err)
		return rejected(in, fmt.Errorf("%w: the order's history cannot be read: %v", errInternal, err)), nil
	}
	return out, err
}

// execute loads, decides and appends, retrying on conflicts.
func (h *handler) execute(ctx context.Context, in incoming) (outcome, error) {
	orderID := in.env.OrderID
	l, hit, err := h.repo.Load(ctx, orderID)
	if err != nil {
		return outcome{}, fmt.Errorf("load order %s: %w", orderID, err)
	}
	h.obs.CacheLookup(hit)
	// verified is set once l is known to include every acknowledged event:
	// an append succeeding on it proves that, and a rejection, which appends
	// nothing, must check it first.
	verified := false
	for attempt := 0; ; attempt++ {
		switch l.State.knows(in.commandID) {
		case handled:
			return h.replayAccepted(ctx, in, l.Sequence)
		case maybeHandled:
			// The filter cannot rule the command out: the order's events
			// settle it, and this one and every later question.
			all, err := h.allEvents(ctx, orderID, l.Sequence)
			if err != nil {
				return outcome{}, err
			}
			l.State.commands.learnAll(all)
			if own := eventsOf(all, in.commandID); len(own) > 0 {
				return replay(in, own), nil
			}
		}
		if attempt > h.maxRetries {
			return rejected(in, fmt.Errorf("%w: other appends to order %s won %d times in a row", errConflict, orderID, attempt)), nil
		}
		_ = h.at("decide", in.commandID)
		decided, err := order.Decide(l.State.Order, in.cmd)
		if err != nil {
			if verified {
				return rejected(in, err), nil
			}
			last, lerr := h.store.LeaderLastSequence(ctx, orderID)
			if lerr != nil {
				return outcome{}, lerr
			}
			verified = true
			if last == l.Sequence {
				return rejected(in, err), nil
			}
			if l, err = h.repo.Reload(ctx, orderID); err != nil {
				return outcome{}, fmt.Errorf("reload order %s: %w", orderID, err)
			}
			continue
		}
		events, err := h.envelopes(in, l, decided)
		if err != nil {
			return outcome{}, err
		}
		started := time.Now()
		appendCtx, span := h.tracer.Start(ctx, "append events")
		if span.IsRecording() {
			span.SetAttributes(attribute.String("jetsource.order_id", orderID), attribute.Int("jetsource.events", len(events)))
		}
		appended, err := h.repo.Append(appendCtx, orderID, l, events, l.State.next(in.commandID, decided))
		if err == nil {
			err = h.at("appended", in.commandID)
		}
		if err != nil {
			span.RecordError(err)
		}
		span.End()
		h.obs.Append(time.Since(started), err)
		if err == nil {
			if appended.SnapshotErr != nil {
				h.log.Warn("snapshot failed", "order_id", orderID, "error", appended.SnapshotErr)
			}
			return accepted(in, events, appended.Sequence), nil
		}
		if !errors.Is(err, es.ErrConflict) && !errors.Is(err, es.ErrUnknownOutcome) {
			return outcome{}, err
		}
		// Another writer won, or the append may have been stored: reload what
		// the stream leader has and decide again. If our events made it, the
		// reloaded state says so, before any retry limit applies.
		h.obs.Retry()
		if l, err = h.repo.Reload(ctx, orderID); err != nil {
			return outcome{}, fmt.Errorf("reload order %s: %w", orderID, err)
		}
		verified = true
	}
}

func (h *handler) envelopes(in incoming, l es.Loaded[Aggregate], decided []order.Event) ([]contract.Event, error) {
	at := h.now()
	now := contract.Time{Time: at}
	events := make([]contract.Event, len(decided))
	for i, d := range decided {
		data, err := json.Marshal(d)
		if err != nil {
			return nil, fmt.Errorf("encode %s: %w", d.EventType(), err)
		}
		events[i] = contract.Event{
			ID:            es.NewEventID(at),
			AggregateType: order.AggregateType,
			AggregateID:   in.env.OrderID,
			Type:          d.EventType(),
			SchemaVersion: contract.SchemaVersion(d.EventType()),
			Version:       l.Version + int64(i) + 1,
			Data:          data,
			Metadata: contract.EventMetadata{
				UserID:        in.env.Metadata.UserID,
				CorrelationID: in.env.Metadata.CorrelationID,
				CausationID:   in.commandID,
				Timestamp:     now,
			},
		}
	}
	return events, nil
}

// replayAccepted rebuilds the accepted result of a command whose events are
// stored, at or below sequence upTo, from those events: their causation id
// is the proof.
func (h *handler) replayAccepted(ctx context.Context, in incoming, upTo uint64) (outcome, error) {
	all, err := h.allEvents(ctx, in.env.OrderID, upTo)
	if err != nil {
		return outcome{}, err
	}
	own := eventsOf(all, in.commandID)
	if len(own) == 0 {
		return outcome{}, fmt.Errorf("order %s records command %s but its events are not readable yet", in.env.OrderID, in.commandID)
	}
	return replay(in, own), nil
}

// allEvents reads the order's events, at least up to sequence upTo: from
// the stream leader what a replica answering direct gets does not have yet.
func (h *handler) allEvents(ctx context.Context, orderID string, upTo uint64) ([]contract.Event, error) {
	all, err := h.store.Read(ctx, orderID, 0)
	if err != nil {
		return nil, fmt.Errorf("read events of order %s: %w", orderID, err)
	}
	var read uint64
	if len(all) > 0 {
		read = all[len(all)-1].Sequence
	}
	if read < upTo {
		missing, err := h.store.ReadFromLeader(ctx, orderID, read)
		if err != nil {
			return nil, fmt.Errorf("read events of order %s: %w", orderID, err)
		}
		all = append(all, missing...)
	}
	return all, nil
}

// eventsOf picks the events a command caused.
func eventsOf(events []contract.Event, commandID string) []contract.Event {
	var own []contract.Event
	for _, e := range events {
		if e.Metadata.CausationID == commandID {
			own = append(own, e)
		}
	}
	return own
}

// replay is the accepted result rebuilt from the command's stored events.
func replay(in incoming, own []contract.Event) outcome {
	out := accepted(in, own, own[len(own)-1].Sequence)
	out.replayed = true
	return out
}

func accepted(in incoming, events []contract.Event, sequence uint64) outcome {
	ids := make([]string, len(events))
	for i, e := range events {
		ids[i] = e.ID
	}
	return outcome{subject: in.resultSubject, correlationID: in.env.Metadata.CorrelationID, result: contract.Result{
		CommandID:      in.commandID,
		OrderID:        in.env.OrderID,
		Status:         contract.StatusAccepted,
		Version:        events[len(events)-1].Version,
		EventIDs:       ids,
		StreamSequence: sequence,
	}}
}

func rejected(in incoming, err error) outcome {
	orderID := in.env.OrderID
	if order.ValidateID("orderId", orderID) != nil {
		// The message says what is wrong with it; echoed whole it could
		// outgrow the results stream's message size limit.
		orderID = ""
	}
	return outcome{subject: in.resultSubject, correlationID: in.env.Metadata.CorrelationID, result: contract.Result{
		CommandID: in.commandID,
		OrderID:   orderID,
		Status:    contract.StatusRejected,
		Error:     &contract.ResultError{Code: ErrorCode(err), Message: clip(err.Error(), maxErrorMessage)},
	}}
}

// maxErrorMessage bounds a rejection's message, which may quote parts of a
// 64 KiB body, well inside es.ResultMaxMsgSize: a result too large to store
// would hold its partition up for good.
const maxErrorMessage = 1024

// clip cuts s to at most n bytes on a rune boundary, marking the cut.
func clip(s string, n int) string {
	if len(s) <= n {
		return s
	}
	const mark = "… (clipped)"
	cut := n - len(mark)
	for cut > 0 && !utf8.RuneStart(s[cut]) {
		cut--
	}
	return s[:cut] + mark
}

var (
	errConflict = errors.New("conflict")
	errInternal = errors.New("internal error")
)

// ErrorCode maps an error to its wire code (docs/contract.md, "Results"). It is the
// only place domain errors meet the wire.
func ErrorCode(err error) contract.Code {
	switch {
	case errors.Is(err, order.ErrInvalidCommand):
		return contract.CodeInvalidCommand
	case errors.Is(err, order.ErrUnknownCommand):
		return contract.CodeUnknownCommand
	case errors.Is(err, order.ErrNotFound):
		return contract.CodeNotFound
	case errors.Is(err, order.ErrAlreadyExists):
		return contract.CodeAlreadyExists
	case errors.Is(err, order.ErrInvalidState):
		return contract.CodeInvalidState
	case errors.Is(err, errConflict):
		return contract.CodeConflict
	default:
		return contract.CodeInternal
	}
}
