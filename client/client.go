// Package client is the Go client of JetSource for other services: it sends
// commands on the contract subjects, waits for their results, and reads an
// order's events. Its messages are the types of package contract, which the
// services use too; it links no service code.
//
// The client checks what must never reach a subject (the command and order
// ids); the aggregator checks everything else and answers a bad command
// with a rejected result.
package client

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"github.com/synadia-io/orbit.go/jetstreamext"
	"go.opentelemetry.io/otel/propagation"
	"go.opentelemetry.io/otel/trace"
	"go.opentelemetry.io/otel/trace/noop"

	"github.com/jetsource/jetsource/contract"
)

// ErrRejected is wrapped by errors for rejected commands; errors.As to a
// *RejectedError gives the code. Errors for ids the client refuses to use
// wrap contract.ErrInvalidID instead.
var ErrRejected = errors.New("command rejected")

// ErrNoResult means no result is stored for a command: it is still queued,
// it was never sent, or its result has expired (the results stream keeps
// them for a day by default).
var ErrNoResult = errors.New("no result stored")

// RejectedError is a rejected command's result as an error.
type RejectedError struct{ Result contract.Result }

func (e *RejectedError) Error() string {
	return fmt.Sprintf("command %s rejected: %s: %s", e.Result.CommandID, e.Result.Error.Code, e.Result.Error.Message)
}

// Is makes a RejectedError match ErrRejected.
func (e *RejectedError) Is(target error) bool { return target == ErrRejected }

// Code is the wire error code of the rejection.
func (e *RejectedError) Code() contract.Code { return e.Result.Error.Code }

// Client sends commands and reads results and events.
type Client struct {
	nc         *nats.Conn
	js         jetstream.JetStream
	partitions int
	tracer     trace.Tracer
}

// Option configures a Client.
type Option func(*Client)

// WithPartitions sets the partition count the streams were created with
// (contract.DefaultPartitions unless configured otherwise); reading events
// needs it.
func WithPartitions(n int) Option { return func(c *Client) { c.partitions = n } }

// WithTracer makes Send start a span per command and pass its context on in
// the message headers.
func WithTracer(tp trace.TracerProvider) Option {
	return func(c *Client) { c.tracer = tp.Tracer("github.com/jetsource/jetsource/client") }
}

// New returns a client on an open NATS connection.
func New(nc *nats.Conn, opts ...Option) (*Client, error) {
	js, err := jetstream.New(nc)
	if err != nil {
		return nil, fmt.Errorf("jetstream: %w", err)
	}
	c := &Client{nc: nc, js: js, partitions: contract.DefaultPartitions, tracer: noop.NewTracerProvider().Tracer("")}
	for _, o := range opts {
		o(c)
	}
	return c, nil
}

// Envelope is a command ready to publish. NewEnvelope fills in a fresh id.
type Envelope struct {
	ID       string
	OrderID  string
	Command  contract.Command
	Metadata contract.CommandMetadata
}

// NewEnvelope wraps cmd for orderID with a new random command id.
func NewEnvelope(orderID string, cmd contract.Command) Envelope {
	return Envelope{ID: NewCommandID(), OrderID: orderID, Command: cmd}
}

// NewCommandID returns a random command id ("cmd-" and 26 hex digits).
func NewCommandID() string {
	var b [13]byte
	_, _ = rand.Read(b[:])
	return "cmd-" + hex.EncodeToString(b[:])
}

// Message is the command as a NATS message on its contract subject, with
// Nats-Msg-Id set so JetStream drops a re-send within its duplicate window.
func (e Envelope) Message() (*nats.Msg, error) {
	if err := errors.Join(contract.ValidateID("id", e.ID), contract.ValidateID("orderId", e.OrderID)); err != nil {
		return nil, err
	}
	if e.Command == nil {
		return nil, fmt.Errorf("envelope %s has no command", e.ID)
	}
	data, err := json.Marshal(e.Command)
	if err != nil {
		return nil, fmt.Errorf("encode %s: %w", e.Command.CommandType(), err)
	}
	body, err := json.Marshal(contract.CommandEnvelope{ID: e.ID, Type: e.Command.CommandType(), OrderID: e.OrderID, Data: data, Metadata: e.Metadata})
	if err != nil {
		return nil, fmt.Errorf("encode envelope: %w", err)
	}
	m := nats.NewMsg(contract.CommandSubject(e.OrderID, e.Command.CommandType()))
	m.Header.Set(contract.HeaderMsgID, e.ID)
	m.Data = body
	return m, nil
}

// Publish stores the command in ORDERS_COMMANDS without waiting for its
// result. Publishing the same envelope again is safe.
func (c *Client) Publish(ctx context.Context, e Envelope) error {
	m, err := e.Message()
	if err != nil {
		return err
	}
	return c.publish(ctx, e, m)
}

func (c *Client) publish(ctx context.Context, e Envelope, m *nats.Msg) error {
	propagation.TraceContext{}.Inject(ctx, headerCarrier(m.Header))
	if _, err := c.js.PublishMsg(ctx, m); err != nil {
		return fmt.Errorf("publish %s %s: %w", e.Command.CommandType(), e.ID, err)
	}
	return nil
}

// Send publishes the command and waits for its result. A rejection comes
// back as the Result and a *RejectedError. If ctx ends first, sending the
// same envelope again returns the command's one outcome.
func (c *Client) Send(ctx context.Context, e Envelope) (contract.Result, error) {
	m, err := e.Message()
	if err != nil {
		return contract.Result{}, err
	}
	ctx, span := c.tracer.Start(ctx, "send "+e.Command.CommandType(), trace.WithSpanKind(trace.SpanKindProducer))
	defer span.End()
	// Subscribe first, so a quick result is not missed.
	sub, err := c.nc.SubscribeSync(contract.ResultSubject(e.ID))
	if err != nil {
		return contract.Result{}, fmt.Errorf("subscribe to the result of %s: %w", e.ID, err)
	}
	defer func() { _ = sub.Unsubscribe() }()
	if err := c.publish(ctx, e, m); err != nil {
		return contract.Result{}, err
	}
	r, err := c.await(ctx, e.ID, sub)
	if err != nil {
		return contract.Result{}, err
	}
	if r.Status == contract.StatusRejected {
		return r, &RejectedError{Result: r}
	}
	return r, nil
}

// Await waits for the result of a command published earlier.
func (c *Client) Await(ctx context.Context, commandID string) (contract.Result, error) {
	if err := contract.ValidateID("commandId", commandID); err != nil {
		return contract.Result{}, err
	}
	sub, err := c.nc.SubscribeSync(contract.ResultSubject(commandID))
	if err != nil {
		return contract.Result{}, fmt.Errorf("subscribe to the result of %s: %w", commandID, err)
	}
	defer func() { _ = sub.Unsubscribe() }()
	return c.await(ctx, commandID, sub)
}

// Result returns a command's stored result without waiting for one, or
// ErrNoResult. A rejection is a result like any other here: its Status
// says so.
func (c *Client) Result(ctx context.Context, commandID string) (contract.Result, error) {
	if err := contract.ValidateID("commandId", commandID); err != nil {
		return contract.Result{}, err
	}
	r, ok, err := c.stored(ctx, commandID)
	if err == nil && !ok {
		err = fmt.Errorf("command %s: %w", commandID, ErrNoResult)
	}
	return r, err
}

// await takes the result from the subscription, or from the results stream
// when it was stored before the subscription began (a re-sent command).
func (c *Client) await(ctx context.Context, commandID string, sub *nats.Subscription) (contract.Result, error) {
	for {
		if r, ok, err := c.stored(ctx, commandID); err != nil || ok {
			return r, err
		}
		wait, cancel := context.WithTimeout(ctx, 500*time.Millisecond)
		m, err := sub.NextMsgWithContext(wait)
		cancel()
		if err == nil {
			var r contract.Result
			if err := json.Unmarshal(m.Data, &r); err != nil {
				return contract.Result{}, fmt.Errorf("decode result of %s: %w", commandID, err)
			}
			return r, nil
		}
		if ctx.Err() != nil {
			return contract.Result{}, fmt.Errorf("wait for the result of %s: %w", commandID, ctx.Err())
		}
	}
}

// stored looks the result up in ORDERS_RESULTS with a direct get.
func (c *Client) stored(ctx context.Context, commandID string) (contract.Result, bool, error) {
	msgs, err := jetstreamext.GetLastMsgsFor(ctx, c.js, contract.ResultsStream, []string{contract.ResultSubject(commandID)})
	if err != nil {
		return contract.Result{}, false, fmt.Errorf("look up the result of %s: %w", commandID, err)
	}
	for m, err := range msgs {
		if errors.Is(err, jetstreamext.ErrNoMessages) {
			break
		}
		if err != nil {
			return contract.Result{}, false, fmt.Errorf("look up the result of %s: %w", commandID, err)
		}
		var r contract.Result
		if err := json.Unmarshal(m.Data, &r); err != nil {
			return contract.Result{}, false, fmt.Errorf("decode result of %s: %w", commandID, err)
		}
		return r, true, nil
	}
	return contract.Result{}, false, nil
}

// Events returns an order's events, oldest first, upcast to the current
// schema versions (contract.Upcast). They are read with
// direct gets, which on a replicated stream any replica answers: right
// after a command, a lagging one can miss its events.
func (c *Client) Events(ctx context.Context, orderID string) ([]contract.Event, error) {
	if err := contract.ValidateID("orderId", orderID); err != nil {
		return nil, err
	}
	subject := contract.EventSubject(orderID, c.partitions)
	var events []contract.Event
	for next := uint64(1); ; {
		msgs, err := jetstreamext.GetBatch(ctx, c.js, contract.EventsStream, readBatch,
			jetstreamext.GetBatchSeq(next), jetstreamext.GetBatchSubject(subject))
		if err != nil {
			return nil, fmt.Errorf("read events of %s: %w", orderID, err)
		}
		pending := ""
		for m, err := range msgs {
			if errors.Is(err, jetstreamext.ErrNoMessages) {
				return events, nil
			}
			if err != nil {
				return nil, fmt.Errorf("read events of %s: %w", orderID, err)
			}
			e, err := readEvent(m.Subject, m.Sequence, m.Data)
			if err != nil {
				return nil, fmt.Errorf("read events of %s: %w", orderID, err)
			}
			events = append(events, e)
			next, pending = m.Sequence+1, m.Header.Get("Nats-Num-Pending")
		}
		if pending == "0" || pending == "" {
			return events, nil
		}
	}
}

// readBatch is how many events one direct batch get asks for.
const readBatch = 1000

// DecodeEvent returns the typed data of an event, upcast first if it is
// of an older schema version (as an event read from the stream by other
// means may be). The data is one of the event types of package contract,
// so a type switch over them is complete.
func DecodeEvent(e contract.Event) (contract.EventData, error) {
	e, err := contract.Upcast(e)
	if err != nil {
		return nil, err
	}
	return contract.ParseEventData(e.Type, e.Data)
}

// headerCarrier lets OpenTelemetry write trace context into NATS headers,
// whose keys, unlike HTTP's, are case-sensitive.
type headerCarrier nats.Header

func (c headerCarrier) Get(key string) string { return nats.Header(c).Get(key) }
func (c headerCarrier) Set(key, value string) { nats.Header(c).Set(key, value) }
func (c headerCarrier) Keys() []string {
	keys := make([]string, 0, len(c))
	for k := range c {
		keys = append(keys, k)
	}
	return keys
}
