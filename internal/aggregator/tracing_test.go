package aggregator_test

import (
	"context"
	"encoding/json"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	sdktrace "go.opentelemetry.io/otel/sdk/trace"
	"go.opentelemetry.io/otel/sdk/trace/tracetest"
	"go.opentelemetry.io/otel/trace"

	"github.com/jetsource/jetsource/contract"
	"github.com/jetsource/jetsource/internal/aggregator"
	"github.com/jetsource/jetsource/internal/eventually"
	"github.com/jetsource/jetsource/internal/tracing"
)

// TestTraceContextFlowsFromCommandToEvents sends a command carrying a
// traceparent and finds the aggregator's spans, the stored events and the
// result in the same trace.
func TestTraceContextFlowsFromCommandToEvents(t *testing.T) {
	exp := tracetest.NewInMemoryExporter()
	tp := sdktrace.NewTracerProvider(sdktrace.WithSyncer(exp))
	h := startHarness(t, aggregator.Config{Tracer: tp})

	ctx, client := tp.Tracer("client").Start(context.Background(), "send CreateOrder")
	traceID := client.SpanContext().TraceID()
	id := newID("ord")
	body, _ := json.Marshal(cmd{ID: id, Type: "CreateOrder", OrderID: id, Data: map[string]any{"customerId": "c", "items": []map[string]any{{"productId": "a", "quantity": 1, "unitPriceCents": 1}}}})
	m := nats.NewMsg(contract.CommandSubject(id, "CreateOrder"))
	m.Data = body
	m.Header.Set(jetstream.MsgIDHeader, id)
	tracing.Inject(ctx, m.Header)
	if _, err := h.js.PublishMsg(ctx, m); err != nil {
		t.Fatal(err)
	}
	client.End()
	accepted(t, h.waitResult(contract.ResultSubject(id)))

	stream, err := h.js.Stream(ctx, contract.EventsStream)
	if err != nil {
		t.Fatal(err)
	}
	for _, e := range h.events(id) {
		stored, err := stream.GetMsg(ctx, e.Sequence)
		if err != nil {
			t.Fatal(err)
		}
		got := trace.SpanContextFromContext(tracing.Extract(context.Background(), stored.Header))
		if got.TraceID() != traceID {
			t.Fatalf("event %s carries trace %s, want %s (header %q)", e.ID, got.TraceID(), traceID, stored.Header.Get("traceparent"))
		}
	}
	eventually.True(t, 5*time.Second, "the handle span is exported", func() bool { return len(exp.GetSpans()) >= 3 })
	names := map[string]bool{}
	for _, s := range exp.GetSpans() {
		if s.SpanContext.TraceID() != traceID {
			t.Fatalf("span %q is in trace %s, not the command's %s", s.Name, s.SpanContext.TraceID(), traceID)
		}
		names[s.Name] = true
	}
	if !names["handle CreateOrder"] || !names["append events"] {
		t.Fatalf("spans %v lack the aggregator's", names)
	}
}
