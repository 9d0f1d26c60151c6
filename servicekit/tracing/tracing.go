// Package tracing sets up OpenTelemetry traces for a Takt program, and carries a W3C
// trace context through what Takt sends: the envelope's optional traceparent field
// (set by the agent), Kafka record headers (set by the bridge; package tracekafka),
// SQL (pgx; package tracepgx) and HTTP.
//
// Off by default. The standard variables turn it on and tune it:
//
//	OTEL_EXPORTER_OTLP_ENDPOINT or OTEL_EXPORTER_OTLP_TRACES_ENDPOINT  where spans go (OTLP over HTTP, protobuf); traces are on when one is set
//	OTEL_TRACES_EXPORTER=none, OTEL_SDK_DISABLED=true                   off even so
//	OTEL_EXPORTER_OTLP_(TRACES_)PROTOCOL                                http/protobuf (the default; grpc is refused, naming this)
//	OTEL_EXPORTER_OTLP_(TRACES_)HEADERS, _TIMEOUT, _CERTIFICATE, ...   as the OTLP exporter documents them
//	OTEL_TRACES_SAMPLER, OTEL_TRACES_SAMPLER_ARG                        the sampler (default parentbased_always_on)
//	OTEL_SERVICE_NAME, OTEL_RESOURCE_ATTRIBUTES                         the resource (default service.name: the program)
//	OTEL_BSP_MAX_QUEUE_SIZE, OTEL_BSP_SCHEDULE_DELAY, ...               the batch span processor's bounds
//
// When traces are off, every tracer is OpenTelemetry's no-op one, and Enabled says so
// to code that would otherwise do work only a span needs.
package tracing

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"sync/atomic"
	"time"

	"go.opentelemetry.io/otel"
	"go.opentelemetry.io/otel/exporters/otlp/otlptrace/otlptracehttp"
	"go.opentelemetry.io/otel/propagation"
	"go.opentelemetry.io/otel/sdk/resource"
	sdktrace "go.opentelemetry.io/otel/sdk/trace"
	semconv "go.opentelemetry.io/otel/semconv/v1.43.0"
	"go.opentelemetry.io/otel/trace"
)

var enabled atomic.Bool

// Enabled says whether Setup turned traces on in this process.
func Enabled() bool { return enabled.Load() }

// Tracer is the program's tracer for a component (the no-op one when traces are off).
func Tracer(component string) trace.Tracer {
	return otel.Tracer("takt.dev/" + component)
}

// propagator is W3C Trace Context, whatever the environment says: the envelope's
// field and the Kafka headers are documented as traceparent.
var propagator = propagation.TraceContext{}

// Setup turns traces on when the environment (getenv) asks, for the program named
// service at version; the stop it returns sends what is queued (waiting up to 5 s):
// call it on the way out. With traces off it returns a stop that does nothing.
func Setup(ctx context.Context, getenv func(string) string, service, version string) (stop func(), err error) {
	nothing := func() {}
	if strings.EqualFold(getenv("OTEL_SDK_DISABLED"), "true") {
		return nothing, nil
	}
	switch exp := strings.ToLower(getenv("OTEL_TRACES_EXPORTER")); exp {
	case "none":
		return nothing, nil
	case "", "otlp":
	default:
		return nil, fmt.Errorf("OTEL_TRACES_EXPORTER %q: want otlp or none", exp)
	}
	if getenv("OTEL_EXPORTER_OTLP_ENDPOINT") == "" && getenv("OTEL_EXPORTER_OTLP_TRACES_ENDPOINT") == "" {
		return nothing, nil // off by default
	}
	for _, name := range []string{"OTEL_EXPORTER_OTLP_TRACES_PROTOCOL", "OTEL_EXPORTER_OTLP_PROTOCOL"} {
		if p := getenv(name); p != "" && p != "http/protobuf" {
			return nil, fmt.Errorf("%s %q: Takt exports OTLP over HTTP only: want http/protobuf (a collector's port 4318)", name, p)
		}
	}
	exporter, err := otlptracehttp.New(ctx) // reads the OTEL_EXPORTER_OTLP_* variables
	if err != nil {
		return nil, fmt.Errorf("OTLP trace exporter: %w", err)
	}
	res, err := resource.New(ctx,
		resource.WithAttributes(semconv.ServiceName(service), semconv.ServiceVersion(version)),
		resource.WithFromEnv(), // OTEL_SERVICE_NAME and OTEL_RESOURCE_ATTRIBUTES win
		resource.WithHost(), resource.WithProcessPID())
	if err != nil && !errors.Is(err, resource.ErrPartialResource) {
		return nil, fmt.Errorf("trace resource: %w", err)
	}
	tp := sdktrace.NewTracerProvider(sdktrace.WithBatcher(exporter), sdktrace.WithResource(res))
	otel.SetTracerProvider(tp)
	otel.SetTextMapPropagator(propagator)
	enabled.Store(true)
	return func() {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		tp.Shutdown(ctx)
		enabled.Store(false)
	}, nil
}

// TraceParent is the W3C traceparent of the span in ctx, or "" when it has none (or
// traces are off).
func TraceParent(ctx context.Context) string {
	c := propagation.MapCarrier{}
	propagator.Inject(ctx, c)
	return c["traceparent"]
}

// FromTraceParent returns ctx with the remote span context a W3C traceparent names
// (ctx unchanged when it is empty or malformed).
func FromTraceParent(ctx context.Context, traceparent string) context.Context {
	if traceparent == "" {
		return ctx
	}
	return propagator.Extract(ctx, propagation.MapCarrier{"traceparent": traceparent})
}
