package integration

import (
	"context"
	"io"
	"log/slog"
	"testing"
	"time"

	"github.com/jackc/pgx/v5/pgxpool"
	sdktrace "go.opentelemetry.io/otel/sdk/trace"
	"go.opentelemetry.io/otel/sdk/trace/tracetest"

	"github.com/jetsource/jetsource/client"
	"github.com/jetsource/jetsource/contract"
	"github.com/jetsource/jetsource/internal/aggregator"
	"github.com/jetsource/jetsource/internal/eventually"
	"github.com/jetsource/jetsource/internal/natstest"
	"github.com/jetsource/jetsource/internal/projections"
	"github.com/jetsource/jetsource/internal/projections/migrations"
	"github.com/jetsource/jetsource/internal/projections/readmodel"
)

// TestOneTraceFromCommandToProjectedRow follows a traced command through
// the aggregator, the event store and the order_summary projector: every
// span, up to the one that projected the row, is in the command's trace.
func TestOneTraceFromCommandToProjectedRow(t *testing.T) {
	t.Parallel()
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	_, nc, js := natstest.Streams(t, natstest.Partitions)
	exp := tracetest.NewInMemoryExporter()
	tp := sdktrace.NewTracerProvider(sdktrace.WithSyncer(exp))
	quiet := slog.New(slog.NewTextHandler(io.Discard, nil))

	// The services are wired here rather than through their composition
	// roots, which export traces over OTLP only: the test reads them from
	// memory.
	acfg := aggregator.DefaultConfig()
	acfg.Tracer, acfg.Logger = tp, quiet
	svc, err := aggregator.New(js, acfg)
	if err != nil {
		t.Fatal(err)
	}
	pool, err := pgxpool.New(ctx, postgres.DB(t))
	if err != nil {
		t.Fatal(err)
	}
	defer pool.Close()
	if _, err := migrations.Apply(ctx, pool, projections.DefaultSchema); err != nil {
		t.Fatal(err)
	}
	runner, err := projections.NewRunner(pool, js, projections.Config{Projection: readmodel.OrderSummary{}, Tracer: tp, Logger: quiet})
	if err != nil {
		t.Fatal(err)
	}
	done := make(chan struct{}, 2)
	go func() { _ = svc.Run(ctx); done <- struct{}{} }()
	go func() { _ = runner.Run(ctx); done <- struct{}{} }()
	defer func() { cancel(); <-done; <-done }()

	c, err := client.New(nc, client.WithTracer(tp))
	if err != nil {
		t.Fatal(err)
	}
	sendCtx, root := tp.Tracer("test").Start(ctx, "checkout")
	r, err := c.Send(sendCtx, client.NewEnvelope("ord-traced", contract.CreateOrder{CustomerID: "c"}))
	root.End()
	if err != nil {
		t.Fatal(err)
	}
	traceID := root.SpanContext().TraceID()

	eventually.True(t, 30*time.Second, "the order is projected", func() bool {
		var seq int64
		err := pool.QueryRow(ctx, "SELECT last_sequence FROM jetsource.orders WHERE id = 'ord-traced'").Scan(&seq)
		return err == nil && uint64(seq) == r.StreamSequence
	})
	want := map[string]bool{"send CreateOrder": false, "handle CreateOrder": false, "append events": false, "project OrderCreated": false}
	eventually.True(t, 10*time.Second, "every span is exported", func() bool {
		for _, s := range exp.GetSpans() {
			if _, ok := want[s.Name]; ok && s.SpanContext.TraceID() == traceID {
				want[s.Name] = true
			}
		}
		for _, seen := range want {
			if !seen {
				return false
			}
		}
		return true
	})
	for _, s := range exp.GetSpans() {
		if s.SpanContext.TraceID() != traceID {
			t.Errorf("span %q is in trace %s, not the command's %s", s.Name, s.SpanContext.TraceID(), traceID)
		}
	}
}
