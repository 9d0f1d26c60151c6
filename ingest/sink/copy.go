package sink

import (
	"context"

	"github.com/jackc/pgx/v5"

	"takt.dev/schemas"
)

var sampleColumns = []string{"tenant_id", "equipment", "tag", "ts", "value", "text_value", "quality", "role", "agent", "seq"}

// copySamples copies every sample of envs into samples (PostgreSQL routes each row
// to its day's partition) and returns the row count.
func copySamples(ctx context.Context, tx pgx.Tx, envs []*schemas.Envelope) (int, error) {
	n, err := tx.CopyFrom(ctx, pgx.Identifier{"samples"}, sampleColumns, &sampleRows{envs: envs, i: -1})
	return int(n), err
}

// sampleRows walks the samples of several envelopes as COPY rows, reusing one
// row slice.
type sampleRows struct {
	envs []*schemas.Envelope
	e, i int
	row  [10]any
}

func (r *sampleRows) Next() bool {
	for r.e < len(r.envs) {
		r.i++
		if r.i < len(r.envs[r.e].Samples) {
			return true
		}
		r.e, r.i = r.e+1, -1
	}
	return false
}

func (r *sampleRows) Values() ([]any, error) {
	e := r.envs[r.e]
	s := &e.Samples[r.i]
	r.row[0], r.row[1], r.row[2], r.row[3] = e.Tenant, e.Equipment, s.Tag, s.TS
	r.row[4], r.row[5] = nil, nil
	switch s.Kind {
	case schemas.NumberValue:
		r.row[4] = s.Value
	case schemas.TextValue:
		r.row[5] = s.Text
	}
	r.row[6], r.row[7], r.row[8], r.row[9] = int16(s.Quality), int16(s.Role), e.Agent, int64(s.Seq)
	return r.row[:], nil
}

func (r *sampleRows) Err() error { return nil }
