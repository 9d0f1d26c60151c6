// Package tracepgx makes spans of the SQL a pgx connection runs (apart from package
// tracing, so that programs without PostgreSQL, the agent, do not link its driver).
package tracepgx

import (
	"context"
	"strings"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"
	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/codes"
	semconv "go.opentelemetry.io/otel/semconv/v1.43.0"
	"go.opentelemetry.io/otel/trace"

	"takt.dev/servicekit/tracing"
)

// PgxTracer makes a client span of every query, COPY and batch a pgx connection
// runs, a child of the span in the caller's context (db.system.name postgresql, the
// statement's text, without its arguments, and rows affected). Give it to a pool with
// Instrument.
type PgxTracer struct{ tracer trace.Tracer }

// pgxTracer is the one every connection shares (the global tracer provider it reads
// may be set after it is made).
var pgxTracer = &PgxTracer{tracer: tracing.Tracer("pgx")}

// Instrument sets a PgxTracer on cfg when traces are on (a pgxpool.Config's
// ConnConfig, or a single connection's config).
func Instrument(cfg *pgx.ConnConfig) {
	if tracing.Enabled() {
		cfg.Tracer = pgxTracer
	}
}

func (t *PgxTracer) start(ctx context.Context, op, text string, attrs ...attribute.KeyValue) context.Context {
	ctx, _ = t.tracer.Start(ctx, op, trace.WithSpanKind(trace.SpanKindClient), trace.WithAttributes(append(attrs,
		semconv.DBSystemNamePostgreSQL, semconv.DBOperationName(op), semconv.DBQueryText(text))...))
	return ctx
}

func end(ctx context.Context, err error, rows int64) {
	span := trace.SpanFromContext(ctx)
	if err != nil {
		span.RecordError(err)
		span.SetStatus(codes.Error, err.Error())
	}
	span.SetAttributes(attribute.Int64("db.response.returned_rows", rows))
	span.End()
}

// TraceQueryStart implements pgx.QueryTracer.
func (t *PgxTracer) TraceQueryStart(ctx context.Context, _ *pgx.Conn, d pgx.TraceQueryStartData) context.Context {
	op, _, _ := strings.Cut(strings.TrimSpace(d.SQL), " ")
	return t.start(ctx, strings.ToUpper(op), d.SQL)
}

// TraceQueryEnd implements pgx.QueryTracer.
func (t *PgxTracer) TraceQueryEnd(ctx context.Context, _ *pgx.Conn, d pgx.TraceQueryEndData) {
	end(ctx, d.Err, d.CommandTag.RowsAffected())
}

// TraceCopyFromStart implements pgx.CopyFromTracer.
func (t *PgxTracer) TraceCopyFromStart(ctx context.Context, _ *pgx.Conn, d pgx.TraceCopyFromStartData) context.Context {
	return t.start(ctx, "COPY", "COPY "+d.TableName.Sanitize()+" FROM STDIN", semconv.DBCollectionName(d.TableName.Sanitize()))
}

// TraceCopyFromEnd implements pgx.CopyFromTracer.
func (t *PgxTracer) TraceCopyFromEnd(ctx context.Context, _ *pgx.Conn, d pgx.TraceCopyFromEndData) {
	end(ctx, d.Err, d.CommandTag.RowsAffected())
}

// TraceBatchStart implements pgx.BatchTracer.
func (t *PgxTracer) TraceBatchStart(ctx context.Context, _ *pgx.Conn, d pgx.TraceBatchStartData) context.Context {
	return t.start(ctx, "BATCH", "", attribute.Int("db.operation.batch.size", d.Batch.Len()))
}

// TraceBatchQuery implements pgx.BatchTracer: each statement an event of the batch's span.
func (t *PgxTracer) TraceBatchQuery(ctx context.Context, _ *pgx.Conn, d pgx.TraceBatchQueryData) {
	attrs := []attribute.KeyValue{semconv.DBQueryText(d.SQL)}
	if d.Err != nil {
		attrs = append(attrs, attribute.String("error", d.Err.Error()))
	}
	trace.SpanFromContext(ctx).AddEvent("query", trace.WithAttributes(attrs...))
}

// TraceBatchEnd implements pgx.BatchTracer.
func (t *PgxTracer) TraceBatchEnd(ctx context.Context, _ *pgx.Conn, d pgx.TraceBatchEndData) {
	end(ctx, d.Err, 0)
}

// NewPool is pgxpool.New with the pool's connections traced when traces are on.
func NewPool(ctx context.Context, url string) (*pgxpool.Pool, error) {
	cfg, err := pgxpool.ParseConfig(url)
	if err != nil {
		return nil, err
	}
	Instrument(cfg.ConnConfig)
	return pgxpool.NewWithConfig(ctx, cfg)
}

// Start begins a client span for a statement run outside pgx's traced calls (a COPY
// through the connection's pgconn), as PgxTracer would name it; end ends it with the
// statement's error and rows. With traces off both do nothing.
func Start(ctx context.Context, op, text string) (context.Context, func(err error, rows int64)) {
	if !tracing.Enabled() {
		return ctx, func(error, int64) {}
	}
	ctx = pgxTracer.start(ctx, op, text)
	return ctx, func(err error, rows int64) { end(ctx, err, rows) }
}
