package tracekafka

import (
	"context"
	"testing"

	"github.com/segmentio/kafka-go"
	sdktrace "go.opentelemetry.io/otel/sdk/trace"
	"go.opentelemetry.io/otel/sdk/trace/tracetest"

	"takt.dev/servicekit/tracing"
)

// A batch of records continues each record's trace (from its traceparent header): a
// span per record, the child of the header's span, and the batch's span the child of
// the first record's, linked to the others; what the batch does is its child.
func TestConsumeBatchContinuesEachRecordsTrace(t *testing.T) {
	rec := tracetest.NewSpanRecorder()
	tracer := sdktrace.NewTracerProvider(sdktrace.WithSpanProcessor(rec)).Tracer("test")
	ctx, upstream := tracer.Start(context.Background(), "bridge")
	var first kafka.Message
	SetHeader(ctx, &first)
	SetHeader(ctx, &first) // replaces, never adds a second
	upstream.End()
	if len(first.Headers) != 1 || string(first.Headers[0].Value) != tracing.TraceParent(ctx) {
		t.Fatalf("headers %v", first.Headers)
	}
	other := kafka.Message{Headers: []kafka.Header{{Key: HeaderTraceParent, Value: []byte("00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01")}}}
	untraced := kafka.Message{}
	first.Topic, other.Topic, untraced.Topic = "takt.samples.v1", "takt.samples.v1", "takt.samples.v1"

	bctx, end := ConsumeBatch(context.Background(), tracer, "batch", []kafka.Message{first, other, untraced})
	_, work := tracer.Start(bctx, "COPY")
	work.End()
	end()

	spans := map[string][]sdktrace.ReadOnlySpan{}
	for _, s := range rec.Ended() {
		spans[s.Name()] = append(spans[s.Name()], s)
	}
	recs, batch, copy := spans["consume takt.samples.v1"], spans["batch"][0], spans["COPY"][0]
	if len(recs) != 3 {
		t.Fatalf("%d record spans, want 3", len(recs))
	}
	if recs[0].Parent().SpanID() != upstream.SpanContext().SpanID() || recs[0].SpanContext().TraceID() != upstream.SpanContext().TraceID() {
		t.Errorf("the first record's span does not continue the bridge's")
	}
	if recs[1].SpanContext().TraceID().String() != "4bf92f3577b34da6a3ce929d0e0e4736" || recs[1].Parent().SpanID().String() != "00f067aa0ba902b7" {
		t.Errorf("the second record's span does not continue its header's trace: %v", recs[1].SpanContext())
	}
	if batch.Parent().SpanID() != recs[0].SpanContext().SpanID() || len(batch.Links()) != 2 {
		t.Errorf("the batch's span: parent %v, %d links; want the first record's, and links to the other two", batch.Parent().SpanID(), len(batch.Links()))
	}
	if copy.Parent().SpanID() != batch.SpanContext().SpanID() {
		t.Errorf("the batch's work is not the batch span's child")
	}
}
