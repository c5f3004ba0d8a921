// Package query is the orders-query service (DESIGN section 13): a NATS
// micro service that answers, from an order's events alone, what the order
// was now, at a version or at a time (orders.query.state), and what
// happened to it, page by page (orders.query.history). It reads with direct
// gets and keeps no state, so its replicas share the requests through the
// micro queue group.
package query

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"strconv"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"github.com/nats-io/nats.go/micro"
	"go.opentelemetry.io/otel/trace"
	"go.opentelemetry.io/otel/trace/noop"

	"github.com/jetsource/jetsource/contract"
	"github.com/jetsource/jetsource/internal/config"
	"github.com/jetsource/jetsource/internal/es"
	"github.com/jetsource/jetsource/internal/order"
	"github.com/jetsource/jetsource/internal/tracing"
)

// Errors a request can fail with; Code maps them to micro error codes.
var (
	// ErrBadRequest: the request is malformed or asks for something that
	// cannot be asked (a version and a time together).
	ErrBadRequest = errors.New("bad request")
	// ErrNotFound: the order, or the version or time asked for, does not
	// exist.
	ErrNotFound = errors.New("not found")
)

// requestError is a request's fault, told in its own words: it matches
// its kind (ErrBadRequest, ErrNotFound) without saying it, as the micro
// error code does.
type requestError struct {
	kind error
	msg  string
}

func (e *requestError) Error() string { return e.msg }
func (e *requestError) Unwrap() error { return e.kind }

func badRequest(format string, args ...any) error {
	return &requestError{kind: ErrBadRequest, msg: fmt.Sprintf(format, args...)}
}

func notFound(format string, args ...any) error {
	return &requestError{kind: ErrNotFound, msg: fmt.Sprintf(format, args...)}
}

// Code is the micro error code of err: 400, 404 or 500. It is the only
// place where errors meet the wire.
func Code(err error) int {
	switch {
	case errors.Is(err, ErrBadRequest):
		return contract.QueryBadRequest
	case errors.Is(err, ErrNotFound):
		return contract.QueryNotFound
	default:
		return contract.QueryFailed
	}
}

// Config configures the service. DefaultConfig is the home of its defaults.
type Config struct {
	// Partitions is the streams' partition count.
	Partitions int
	// Timeout bounds the reads of one request.
	Timeout time.Duration
	// Logger receives failed requests; slog.Default() if nil.
	Logger *slog.Logger
	// Observer receives every request's outcome; may be nil.
	Observer Observer
	// Tracer traces requests that carry trace context; a no-op provider if
	// nil.
	Tracer trace.TracerProvider
}

// DefaultConfig returns the defaults.
func DefaultConfig() Config {
	return Config{Partitions: contract.DefaultPartitions, Timeout: 5 * time.Second}
}

// Validate reports every problem at once, as config.FieldErrors.
func (c Config) Validate() error {
	errs := []error{es.ValidatePartitions("Partitions", c.Partitions)}
	if c.Timeout <= 0 {
		errs = append(errs, config.Invalid("Timeout", c.Timeout, "must be positive"))
	}
	return errors.Join(errs...)
}

// Observer receives the outcome of every request, for metrics. Calls come
// from the endpoints' goroutines and must not block.
type Observer interface {
	Request(endpoint string, code int, d time.Duration)
}

// Service is a running orders-query service.
type Service struct {
	cfg    Config
	store  *es.Store
	micro  micro.Service
	tracer trace.Tracer
	// ctx bounds every request; Stop cancels it.
	ctx    context.Context
	cancel context.CancelFunc
}

// Start registers the micro service on nc and answers requests until Stop.
// It needs the events stream (es.RequireStreams of ORDERS_EVENTS).
func Start(nc *nats.Conn, js jetstream.JetStream, cfg Config) (*Service, error) {
	if err := cfg.Validate(); err != nil {
		return nil, fmt.Errorf("query config: %w", err)
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.Default()
	}
	if cfg.Tracer == nil {
		cfg.Tracer = noop.NewTracerProvider()
	}
	ctx, cancel := context.WithCancel(context.Background())
	s := &Service{cfg: cfg, store: es.NewStore(js, cfg.Partitions), ctx: ctx, cancel: cancel,
		tracer: cfg.Tracer.Tracer("github.com/jetsource/jetsource/internal/query")}
	svc, err := micro.AddService(nc, micro.Config{
		Name:        contract.QueryService,
		Version:     contract.QueryServiceVersion,
		Description: "An order's state now, at a version or at a time, and its history, from its events.",
	})
	if err != nil {
		cancel()
		return nil, fmt.Errorf("add the %s service: %w", contract.QueryService, err)
	}
	s.micro = svc
	for _, ep := range []struct {
		name, subject string
		answer        func(context.Context, []byte) (any, error)
	}{
		{"state", contract.QueryStateSubject, s.state},
		{"history", contract.QueryHistorySubject, s.history},
	} {
		if err := svc.AddEndpoint(ep.name, s.handler(ep.name, ep.answer), micro.WithEndpointSubject(ep.subject)); err != nil {
			_ = s.Stop()
			return nil, fmt.Errorf("add the %s endpoint: %w", ep.name, err)
		}
	}
	return s, nil
}

// Stop stops taking requests: the endpoints drain, and requests in hand
// are cut short.
func (s *Service) Stop() error {
	defer s.cancel()
	return s.micro.Stop()
}

// Stopped reports whether the service stopped, on Stop or because its
// connection closed.
func (s *Service) Stopped() bool { return s.micro.Stopped() }

// handler answers one endpoint's requests one at a time, as micro counts
// them in its stats.
func (s *Service) handler(endpoint string, answer func(context.Context, []byte) (any, error)) micro.HandlerFunc {
	return func(req micro.Request) {
		started := time.Now()
		ctx, cancel := context.WithTimeout(s.ctx, s.cfg.Timeout)
		defer cancel()
		ctx, span := s.tracer.Start(tracing.Extract(ctx, nats.Header(req.Headers())), "query "+endpoint,
			trace.WithSpanKind(trace.SpanKindServer))
		defer span.End()
		reply, err := answer(ctx, req.Data())
		if err != nil {
			span.RecordError(err)
		}
		code := 200
		if err == nil {
			err = req.RespondJSON(reply)
		} else {
			code = Code(err)
			if code == contract.QueryFailed {
				s.cfg.Logger.Error("query failed", "endpoint", endpoint, "request", string(req.Data()), "error", err)
			}
			err = req.Error(strconv.Itoa(code), err.Error(), nil)
		}
		if err != nil {
			s.cfg.Logger.Warn("reply failed", "endpoint", endpoint, "error", err)
		}
		if s.cfg.Observer != nil {
			s.cfg.Observer.Request(endpoint, code, time.Since(started))
		}
	}
}

// state answers a contract.StateQuery with a contract.OrderState.
func (s *Service) state(ctx context.Context, body []byte) (any, error) {
	var q contract.StateQuery
	if err := decode(body, &q); err != nil {
		return nil, err
	}
	switch {
	case q.Version < 0:
		return nil, badRequest("version is %d; it must be at least 1 (omit it for the current state)", q.Version)
	case q.Version > 0 && q.At != nil:
		return nil, badRequest("give version or at, not both")
	}
	events, err := s.events(ctx, q.OrderID)
	if err != nil {
		return nil, err
	}
	last := events[len(events)-1]
	switch {
	case q.Version > last.Version:
		return nil, notFound("order %s is at version %d; it has no version %d", q.OrderID, last.Version, q.Version)
	case q.Version > 0:
		events = events[:q.Version]
	case q.At != nil:
		if created := events[0].Metadata.Timestamp; q.At.Before(created.Time) {
			return nil, notFound("order %s was created at %s; it did not exist at %s",
				q.OrderID, created.Format(time.RFC3339Nano), q.At.Format(time.RFC3339Nano))
		}
		// Up to the first event stamped after the time, as loads do.
		for i, e := range events {
			if e.Metadata.Timestamp.After(q.At.Time) {
				events = events[:i]
				break
			}
		}
	}
	st := order.New(q.OrderID)
	for _, e := range events {
		data, err := order.ParseEvent(e.Type, e.Data)
		if err != nil {
			return nil, fmt.Errorf("%w: order %s: event %s at sequence %d: %v", es.ErrCorrupt, q.OrderID, e.ID, e.Sequence, err)
		}
		st.Apply(data)
	}
	return wireState(st), nil
}

// history answers a contract.HistoryQuery with a contract.History.
func (s *Service) history(ctx context.Context, body []byte) (any, error) {
	var q contract.HistoryQuery
	if err := decode(body, &q); err != nil {
		return nil, err
	}
	switch {
	case q.AfterVersion < 0:
		return nil, badRequest("afterVersion is %d; it must not be negative", q.AfterVersion)
	case q.Limit < 0 || q.Limit > contract.MaxHistoryLimit:
		return nil, badRequest("limit is %d; it must be 1 to %d (omit it for %d)", q.Limit, contract.MaxHistoryLimit, contract.DefaultHistoryLimit)
	case q.Limit == 0:
		q.Limit = contract.DefaultHistoryLimit
	}
	events, err := s.events(ctx, q.OrderID)
	if err != nil {
		return nil, err
	}
	from := min(q.AfterVersion, int64(len(events)))
	to := min(from+int64(q.Limit), int64(len(events)))
	page := append([]contract.Event{}, events[from:to]...)
	return contract.History{Events: page, More: to < int64(len(events))}, nil
}

// events reads an order's events, upcast; an order without events does not
// exist.
func (s *Service) events(ctx context.Context, orderID string) ([]contract.Event, error) {
	if err := contract.ValidateID("orderId", orderID); err != nil {
		return nil, badRequest("%v", err)
	}
	events, err := s.store.Read(ctx, orderID, 0)
	if err != nil {
		return nil, fmt.Errorf("read the events of order %s: %w", orderID, err)
	}
	if len(events) == 0 {
		return nil, notFound("no such order %s", orderID)
	}
	for i, e := range events {
		if e.Version != int64(i+1) {
			return nil, fmt.Errorf("%w: order %s: event %s at sequence %d has version %d, want %d",
				es.ErrCorrupt, orderID, e.ID, e.Sequence, e.Version, i+1)
		}
	}
	return events, nil
}

// decode reads a request body strictly: one JSON object, known fields.
func decode(body []byte, v any) error {
	if len(bytes.TrimSpace(body)) == 0 {
		return badRequest(`the request is empty; send a JSON object such as {"orderId":"ord-1"}`)
	}
	dec := json.NewDecoder(bytes.NewReader(body))
	dec.DisallowUnknownFields()
	if err := dec.Decode(v); err != nil {
		return badRequest("the request is not a valid query: %v", err)
	}
	if dec.More() {
		return badRequest("the request has content after the JSON object")
	}
	return nil
}

// wireState maps the domain's state onto the contract's.
func wireState(s order.State) contract.OrderState {
	var items []contract.OrderItem
	for _, it := range s.Items {
		items = append(items, contract.OrderItem{ProductID: it.ProductID, Quantity: it.Quantity, UnitPriceCents: it.UnitPriceCents})
	}
	return contract.OrderState{
		ID: s.ID, CustomerID: s.CustomerID, Currency: s.Currency, Status: string(s.Status), Items: items,
		TotalCents: s.TotalCents, PaymentID: s.PaymentID, PaidCents: s.PaidCents, PaymentMethod: s.PaymentMethod,
		TrackingNumber: s.TrackingNumber, Carrier: s.Carrier, CancelReason: s.CancelReason, Version: s.Version,
	}
}
