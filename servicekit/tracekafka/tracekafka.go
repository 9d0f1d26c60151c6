// Package tracekafka carries a W3C trace context through Kafka record headers (apart
// from package tracing, so that programs without Kafka do not link a Kafka client).
package tracekafka

import (
	"context"

	"github.com/segmentio/kafka-go"
	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/trace"

	"takt.dev/servicekit/tracing"
)

// HeaderTraceParent is the Kafka record header that carries the W3C trace context of
// the span that wrote the record (the bridge's), for any consumer to continue.
const HeaderTraceParent = "traceparent"

// FromHeaders returns ctx with the trace context of a Kafka record's headers.
func FromHeaders(ctx context.Context, headers []kafka.Header) context.Context {
	for _, h := range headers {
		if h.Key == HeaderTraceParent {
			return tracing.FromTraceParent(ctx, string(h.Value))
		}
	}
	return ctx
}

// SetHeader sets (or replaces) the traceparent header of m to the span in ctx; a ctx
// without a span leaves m as it is.
func SetHeader(ctx context.Context, m *kafka.Message) {
	tp := tracing.TraceParent(ctx)
	if tp == "" {
		return
	}
	for i := range m.Headers {
		if m.Headers[i].Key == HeaderTraceParent {
			m.Headers[i].Value = []byte(tp)
			return
		}
	}
	m.Headers = append(m.Headers, kafka.Header{Key: HeaderTraceParent, Value: []byte(tp)})
}

// ConsumeBatch starts, under tracer, a span for each of records (a batch consumed
// together), a child of the span its traceparent header names, and the batch's span
// (name), a child of the first record's and linked to the others' (at most 128), under
// which the batch's work is traced: use the context it returns. end ends them all.
func ConsumeBatch(ctx context.Context, tracer trace.Tracer, name string, records []kafka.Message) (context.Context, func()) {
	spans := make([]trace.Span, 0, len(records))
	var links []trace.Link
	parent := ctx
	for i, m := range records {
		rctx, span := tracer.Start(FromHeaders(ctx, m.Headers), "consume "+m.Topic, trace.WithSpanKind(trace.SpanKindConsumer),
			trace.WithAttributes(attribute.String("messaging.system", "kafka"), attribute.String("messaging.destination.name", m.Topic),
				attribute.Int("messaging.destination.partition.id", m.Partition), attribute.Int64("messaging.kafka.offset", m.Offset)))
		spans = append(spans, span)
		if i == 0 {
			parent = rctx
		} else if len(links) < 128 {
			links = append(links, trace.Link{SpanContext: span.SpanContext()})
		}
	}
	bctx, bspan := tracer.Start(parent, name, trace.WithLinks(links...), trace.WithAttributes(attribute.Int("takt.records", len(records))))
	return bctx, func() {
		bspan.End()
		for _, span := range spans {
			span.End()
		}
	}
}
