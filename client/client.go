// Package client is the Go client of JetSource for other services: it sends
// typed commands on the contract subjects, waits for their results, and
// reads an order's events.
//
// Command, event and result types are aliases of the service's own, so the
// JSON a client writes is exactly what the aggregator reads.
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
	"go.opentelemetry.io/otel/trace"
	"go.opentelemetry.io/otel/trace/noop"

	"github.com/jetsource/jetsource/internal/aggregator"
	"github.com/jetsource/jetsource/internal/es"
	"github.com/jetsource/jetsource/internal/order"
	"github.com/jetsource/jetsource/internal/tracing"
)

// Commands. Their JSON is the "data" of a command envelope.
type (
	Command      = order.Command
	CreateOrder  = order.CreateOrder
	AddItem      = order.AddItem
	RemoveItem   = order.RemoveItem
	SubmitOrder  = order.SubmitOrder
	PayOrder     = order.PayOrder
	ShipOrder    = order.ShipOrder
	DeliverOrder = order.DeliverOrder
	CancelOrder  = order.CancelOrder
)

// Events: Event is the stored envelope; the data types are what DecodeEvent
// returns.
type (
	Event          = es.Event
	OrderCreated   = order.OrderCreated
	ItemAdded      = order.ItemAdded
	ItemRemoved    = order.ItemRemoved
	OrderSubmitted = order.OrderSubmitted
	OrderPaid      = order.OrderPaid
	OrderShipped   = order.OrderShipped
	OrderDelivered = order.OrderDelivered
	OrderCanceled  = order.OrderCanceled
)

// Results and the order state.
type (
	Result      = es.Result
	ResultError = es.ResultError
	State       = order.State
)

// Metadata travels from a command to its events.
type Metadata = aggregator.CommandMetadata

var (
	// ErrRejected is wrapped by errors for rejected commands; errors.As to
	// a *RejectedError gives the code.
	ErrRejected = errors.New("command rejected")
	// ErrInvalidCommand is wrapped by errors for commands and ids the
	// client refuses to send: ids become subject tokens, so an invalid one
	// must never reach a subject.
	ErrInvalidCommand = order.ErrInvalidCommand
)

// RejectedError is a rejected command's result as an error.
type RejectedError struct{ Result Result }

func (e *RejectedError) Error() string {
	return fmt.Sprintf("command %s rejected: %s: %s", e.Result.CommandID, e.Result.Error.Code, e.Result.Error.Message)
}

// Is makes a RejectedError match ErrRejected.
func (e *RejectedError) Is(target error) bool { return target == ErrRejected }

// Code is the wire error code of the rejection.
func (e *RejectedError) Code() string { return e.Result.Error.Code }

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
// (16 unless configured otherwise); reading events needs it.
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
	c := &Client{nc: nc, js: js, partitions: 16, tracer: noop.NewTracerProvider().Tracer("")}
	for _, o := range opts {
		o(c)
	}
	return c, nil
}

// Envelope is a command ready to publish. NewEnvelope fills in a fresh id.
type Envelope struct {
	ID       string
	OrderID  string
	Command  Command
	Metadata Metadata
}

// NewEnvelope wraps cmd for orderID with a new random command id.
func NewEnvelope(orderID string, cmd Command) Envelope {
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
	if err := errors.Join(order.ValidateID("id", e.ID), order.ValidateID("orderId", e.OrderID)); err != nil {
		return nil, err
	}
	if e.Command == nil {
		return nil, fmt.Errorf("%w: no command", ErrInvalidCommand)
	}
	if err := order.ValidateCommand(e.Command); err != nil {
		return nil, fmt.Errorf("%s data: %w", e.Command.CommandType(), err)
	}
	data, err := json.Marshal(e.Command)
	if err != nil {
		return nil, fmt.Errorf("encode %s: %w", e.Command.CommandType(), err)
	}
	body, err := json.Marshal(aggregator.Envelope{ID: e.ID, Type: e.Command.CommandType(), OrderID: e.OrderID, Data: data, Metadata: e.Metadata})
	if err != nil {
		return nil, fmt.Errorf("encode envelope: %w", err)
	}
	m := nats.NewMsg(es.CommandSubject(e.OrderID, e.Command.CommandType()))
	m.Header.Set(jetstream.MsgIDHeader, e.ID)
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
	tracing.Inject(ctx, m.Header)
	if _, err := c.js.PublishMsg(ctx, m); err != nil {
		return fmt.Errorf("publish %s %s: %w", e.Command.CommandType(), e.ID, err)
	}
	return nil
}

// Send publishes the command and waits for its result. A rejection comes
// back as the Result and a *RejectedError. If ctx ends first, sending the
// same envelope again returns the command's one outcome.
func (c *Client) Send(ctx context.Context, e Envelope) (Result, error) {
	m, err := e.Message()
	if err != nil {
		return Result{}, err
	}
	ctx, span := c.tracer.Start(ctx, "send "+e.Command.CommandType(), trace.WithSpanKind(trace.SpanKindProducer))
	defer span.End()
	// Subscribe first, so a quick result is not missed.
	sub, err := c.nc.SubscribeSync(es.ResultSubject(e.ID))
	if err != nil {
		return Result{}, fmt.Errorf("subscribe to the result of %s: %w", e.ID, err)
	}
	defer func() { _ = sub.Unsubscribe() }()
	if err := c.publish(ctx, e, m); err != nil {
		return Result{}, err
	}
	r, err := c.await(ctx, e.ID, sub)
	if err != nil {
		return Result{}, err
	}
	if r.Status == es.StatusRejected {
		return r, &RejectedError{Result: r}
	}
	return r, nil
}

// Await waits for the result of a command published earlier.
func (c *Client) Await(ctx context.Context, commandID string) (Result, error) {
	if err := order.ValidateID("commandId", commandID); err != nil {
		return Result{}, err
	}
	sub, err := c.nc.SubscribeSync(es.ResultSubject(commandID))
	if err != nil {
		return Result{}, fmt.Errorf("subscribe to the result of %s: %w", commandID, err)
	}
	defer func() { _ = sub.Unsubscribe() }()
	return c.await(ctx, commandID, sub)
}

// await takes the result from the subscription, or from the results stream
// when it was stored before the subscription began (a re-sent command).
func (c *Client) await(ctx context.Context, commandID string, sub *nats.Subscription) (Result, error) {
	for {
		if r, ok, err := c.stored(ctx, commandID); err != nil || ok {
			return r, err
		}
		wait, cancel := context.WithTimeout(ctx, 500*time.Millisecond)
		m, err := sub.NextMsgWithContext(wait)
		cancel()
		if err == nil {
			var r Result
			if err := json.Unmarshal(m.Data, &r); err != nil {
				return Result{}, fmt.Errorf("decode result of %s: %w", commandID, err)
			}
			return r, nil
		}
		if ctx.Err() != nil {
			return Result{}, fmt.Errorf("wait for the result of %s: %w", commandID, ctx.Err())
		}
	}
}

func (c *Client) stored(ctx context.Context, commandID string) (Result, bool, error) {
	return es.NewStore(c.js, c.partitions, nil).LookupResult(ctx, commandID)
}

// Events returns an order's events, oldest first.
func (c *Client) Events(ctx context.Context, orderID string) ([]Event, error) {
	if err := order.ValidateID("orderId", orderID); err != nil {
		return nil, err
	}
	return es.NewStore(c.js, c.partitions, nil).Read(ctx, orderID, 0)
}

// DecodeEvent returns the typed data of an event: one of the event types
// above.
func DecodeEvent(e Event) (any, error) { return order.ParseEvent(e.Type, e.Data) }

// StateAsOf folds an order's events up to a version (if version > 0) and a
// time (if not zero): the order as it was then. Version 0 and a zero time
// give the current state.
func (c *Client) StateAsOf(ctx context.Context, orderID string, version int64, at time.Time) (State, error) {
	if err := order.ValidateID("orderId", orderID); err != nil {
		return State{}, err
	}
	repo := aggregator.NewRepository(es.NewStore(c.js, c.partitions, nil), es.RepositoryConfig{})
	l, err := repo.LoadAsOf(ctx, orderID, es.AsOf{Version: version, Time: at})
	if err != nil {
		return State{}, fmt.Errorf("load order %s: %w", orderID, err)
	}
	return l.State.Order, nil
}
