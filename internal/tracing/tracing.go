// Package tracing carries W3C trace context through NATS message headers
// and sets up OpenTelemetry tracer providers: off unless an OTLP endpoint
// is configured.
package tracing

import (
	"context"
	"fmt"

	"github.com/nats-io/nats.go"
	"go.opentelemetry.io/otel/exporters/otlp/otlptrace/otlptracehttp"
	"go.opentelemetry.io/otel/propagation"
	"go.opentelemetry.io/otel/sdk/resource"
	sdktrace "go.opentelemetry.io/otel/sdk/trace"
	semconv "go.opentelemetry.io/otel/semconv/v1.40.0"
	"go.opentelemetry.io/otel/trace"
	"go.opentelemetry.io/otel/trace/noop"
)

// Exporter selects where traces go.
type Exporter struct {
	// OTLPEndpoint is an OTLP/HTTP traces endpoint URL such as
	// http://otel-collector:4318/v1/traces; empty turns tracing off.
	OTLPEndpoint string
}

// Provider returns the tracer provider for service and a function that
// flushes and stops it. Without an endpoint it is a no-op provider, so
// instrumented code costs next to nothing.
func Provider(ctx context.Context, cfg Exporter, service string) (trace.TracerProvider, func(context.Context) error, error) {
	if cfg.OTLPEndpoint == "" {
		return noop.NewTracerProvider(), func(context.Context) error { return nil }, nil
	}
	exp, err := otlptracehttp.New(ctx, otlptracehttp.WithEndpointURL(cfg.OTLPEndpoint))
	if err != nil {
		return nil, nil, fmt.Errorf("otlp trace exporter for %s: %w", cfg.OTLPEndpoint, err)
	}
	tp := sdktrace.NewTracerProvider(
		sdktrace.WithBatcher(exp),
		sdktrace.WithResource(resource.NewWithAttributes(semconv.SchemaURL, semconv.ServiceName(service))),
	)
	return tp, tp.Shutdown, nil
}

// Inject writes the span context of ctx into h as W3C Trace Context
// (traceparent, tracestate), if ctx has one.
func Inject(ctx context.Context, h nats.Header) {
	propagation.TraceContext{}.Inject(ctx, headerCarrier(h))
}

// Extract returns ctx with the remote span context found in h, if any.
func Extract(ctx context.Context, h nats.Header) context.Context {
	return propagation.TraceContext{}.Extract(ctx, headerCarrier(h))
}

// headerCarrier adapts NATS headers to OpenTelemetry's carrier.
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
