package server

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"sort"
	"time"

	"github.com/jackc/pgx/v5"

	"takt.dev/plant/oee"
	"takt.dev/plant/store"
	"takt.dev/schemas"
)

// maxRange bounds a query's time range.
const maxRange = 400 * 24 * time.Hour

func rangeParams(r *http.Request) (from, to time.Time, err error) {
	q := r.URL.Query()
	parse := func(name string) (time.Time, error) {
		v := q.Get(name)
		if v == "" {
			return time.Time{}, badParam(name, "missing (an RFC 3339 time, such as 2026-11-25T06:00:00Z)")
		}
		t, err := time.Parse(time.RFC3339Nano, v)
		if err != nil {
			return time.Time{}, badParam(name, "%q is not an RFC 3339 time", v)
		}
		return t, nil
	}
	if from, err = parse("from"); err != nil {
		return
	}
	if to, err = parse("to"); err != nil {
		return
	}
	if !to.After(from) {
		return from, to, badParam("to", "must be after from")
	}
	if to.Sub(from) > maxRange {
		return from, to, badParam("to", "the range is longer than %d days", int(maxRange.Hours()/24))
	}
	return from, to, nil
}

func bucketParam(r *http.Request) (string, error) {
	b := r.URL.Query().Get("bucket")
	switch b {
	case "":
		return "hour", nil
	case "hour", "shift", "day":
		return b, nil
	}
	return "", badParam("bucket", "%q: want hour, shift or day", b)
}

// Figures is the JSON of one bucket, or of a total.
type Figures struct {
	Start               time.Time `json:"start"`
	End                 time.Time `json:"end"`
	PlannedTimeS        float64   `json:"planned_time_s"`
	RunTimeS            float64   `json:"run_time_s"`
	TotalCount          int64     `json:"total_count"`
	GoodCount           int64     `json:"good_count"`
	ScrapCount          int64     `json:"scrap_count"`
	Availability        *float64  `json:"availability"`
	Performance         *float64  `json:"performance"`
	Quality             *float64  `json:"quality"`
	OEE                 *float64  `json:"oee"`
	PerformanceAbove100 bool      `json:"performance_above_100"`
	// ScheduledTimeS is the shift time in the window so far, and Coverage the share of
	// it the figures rest on (known over scheduled, null when nothing is scheduled):
	// figures on partial data are marked partial (Coverage below 1).
	ScheduledTimeS float64  `json:"scheduled_time_s"`
	Coverage       *float64 `json:"coverage"`
	Partial        bool     `json:"partial"`
	// Anomalies names data that contradict each other (good_above_total: quality and
	// OEE are then undefined; performance_above_100: the ideal cycle time is wrong).
	Anomalies []string `json:"anomalies"`
	Losses    Losses   `json:"losses"`
}

// Losses are the seconds behind the ratios.
type Losses struct {
	BreakdownS   float64 `json:"breakdown_s"`
	SetupS       float64 `json:"setup_s"`
	IdleS        float64 `json:"idle_s"`
	MicroStopS   float64 `json:"micro_stop_s"`
	SpeedLossS   float64 `json:"speed_loss_s"`
	QualityLossS float64 `json:"quality_loss_s"`
	UnknownS     float64 `json:"unknown_s"`
	PlannedDownS float64 `json:"planned_down_s"`
}

func figuresOf(r oee.Result) Figures {
	an := []string{}
	if r.GoodAboveTotal {
		an = append(an, store.AnomalyGoodAboveTotal)
	}
	if r.PerformanceAbove100 {
		an = append(an, store.AnomalyPerformanceAbove100)
	}
	return Figures{ScheduledTimeS: r.ScheduledS, Coverage: r.Coverage, Partial: r.Coverage != nil && *r.Coverage < 1, Anomalies: an,
		Start: r.Start.UTC(), End: r.End.UTC(), PlannedTimeS: r.PlannedS, RunTimeS: r.RunS,
		TotalCount: r.TotalCount, GoodCount: r.GoodCount, ScrapCount: r.ScrapCount,
		Availability: r.Availability, Performance: r.Performance, Quality: r.Quality, OEE: r.OEE,
		PerformanceAbove100: r.PerformanceAbove100,
		Losses: Losses{BreakdownS: r.BreakdownS, SetupS: r.SetupS, IdleS: r.IdleS, MicroStopS: r.MicroStopS,
			SpeedLossS: r.SpeedLossS, QualityLossS: r.QualityLossS, UnknownS: r.UnknownS, PlannedDownS: r.PlannedDownS}}
}

// OEEResponse is the answer of the three OEE endpoints.
type OEEResponse struct {
	Scope   string    `json:"scope"` // equipment, line or site
	Code    string    `json:"code"`
	Bucket  string    `json:"bucket"`
	From    time.Time `json:"from"`
	To      time.Time `json:"to"`
	Buckets []Figures `json:"buckets"`
	Total   Figures   `json:"total"` // from the summed times and counts of every bucket
}

// equipmentOf is the SQL that selects the equipment codes of a scope (code $5,
// site $6, after the four parameters of the windows query it is part of).
var equipmentOf = map[string]string{
	"equipment": `SELECT code FROM equipment WHERE code = $5 AND $6 = $6`,
	"line": `SELECT e.code FROM equipment e JOIN work_center w ON w.id = e.work_center_id JOIN line l ON l.id = w.line_id
		JOIN area a ON a.id = l.area_id JOIN site s ON s.id = a.site_id WHERE l.code = $5 AND ($6 = '' OR s.code = $6)`,
	"site": `SELECT e.code FROM equipment e JOIN work_center w ON w.id = e.work_center_id JOIN line l ON l.id = w.line_id
		JOIN area a ON a.id = l.area_id JOIN site s ON s.id = a.site_id WHERE s.code = $5 AND $6 = $6`,
}

// scopeCount is the SQL that counts the equipment, lines (within site $2, when
// given: sites may share line codes) or sites with code $1.
var scopeCount = map[string]string{
	"equipment": `SELECT count(*) FROM equipment WHERE code = $1 AND $2 = $2`,
	"line": `SELECT count(*) FROM line l JOIN area a ON a.id = l.area_id JOIN site s ON s.id = a.site_id
		WHERE l.code = $1 AND ($2 = '' OR s.code = $2)`,
	"site": `SELECT count(*) FROM site WHERE code = $1 AND $2 = $2`,
}

func scopeExists(ctx context.Context, tx pgx.Tx, scope, code string) error {
	return scopeIn(ctx, tx, scope, code, "")
}

// scopeIn checks that code names exactly one equipment, line (within site, when
// given) or site.
func scopeIn(ctx context.Context, tx pgx.Tx, scope, code, site string) error {
	var n int
	if err := tx.QueryRow(ctx, scopeCount[scope], code, site).Scan(&n); err != nil {
		return err
	}
	return scopeFound(scope, code, n)
}

// scopeFound is the answer to n scopes having the code: none, one (nil) or several.
func scopeFound(scope, code string, n int) error {
	switch {
	case n == 0:
		return notFound(fmt.Sprintf("%s %q", scope, code))
	case n > 1:
		return &apiError{http.StatusConflict, "ambiguous", fmt.Sprintf("%d %ss have the code %q: name the site (?site=)", n, scope, code)}
	}
	return nil
}

func (s *Server) oee(scope string) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		from, to, err := rangeParams(r)
		if err != nil {
			s.fail(w, r, err)
			return
		}
		bucket, err := bucketParam(r)
		if err != nil {
			s.fail(w, r, err)
			return
		}
		code, site := r.PathValue("code"), r.URL.Query().Get("site")
		tenant := r.Context().Value(principalKey).(principal).tenant
		key := answerKey{tenant: tenant, scope: scope, code: code, site: site, bucket: bucket, from: from.UTC(), to: to.UTC()}
		body, t := s.answers.lookup(key)
		if body != nil {
			w.Header().Set("Cache-Status", "takt-api; hit") // RFC 9211
			writeBody(w, http.StatusOK, body)
			return
		}
		resp := OEEResponse{Scope: scope, Code: code, Bucket: bucket, From: from.UTC(), To: to.UTC(), Buckets: []Figures{}}
		// One round trip: the scope's check and its windows (for its equipment,
		// selected in the same statement) in one pipeline.
		var all []oee.Result
		var n int
		err = s.readInTenant(r.Context(), func(b *pgx.Batch) {
			b.Queue(scopeCount[scope], code, site).QueryRow(func(row pgx.Row) error { return row.Scan(&n) })
			store.QueueWindows(b, &all, tenant, bucket, from, to, equipmentOf[scope], code, site)
		})
		if err == nil {
			err = scopeFound(scope, code, n)
		}
		if err != nil {
			s.fail(w, r, err)
			return
		}
		for _, sum := range all { // one per start, its equipment's windows summed
			resp.Buckets = append(resp.Buckets, figuresOf(oee.Sum(sum)))
		}
		total := oee.Sum(all...)
		total.Start, total.End = from, to
		resp.Total = figuresOf(total)
		body, err = json.Marshal(resp)
		if err != nil {
			s.fail(w, r, err)
			return
		}
		body = append(body, '\n')
		switch stored := s.answers.store(key, t, body); {
		case s.answers == nil:
		case !t.ok: // not listening for changes
			w.Header().Set("Cache-Status", "takt-api; fwd=bypass")
		case stored:
			w.Header().Set("Cache-Status", "takt-api; fwd=miss; stored")
		default: // a change came while it was read
			w.Header().Set("Cache-Status", "takt-api; fwd=miss")
		}
		writeBody(w, http.StatusOK, body)
	}
}

// Equipment is the JSON of one equipment.
type Equipment struct {
	Code               string          `json:"code"`
	Name               string          `json:"name"`
	Line               string          `json:"line"`
	Site               string          `json:"site"`
	IdealCycleTimeS    *float64        `json:"ideal_cycle_time_s"`
	MicroStopThreshold float64         `json:"micro_stop_threshold_s"`
	Attributes         json.RawMessage `json:"attributes,omitempty"`
}

const equipmentSQL = `SELECT e.code, e.name, l.code, s.code, e.ideal_cycle_time_s, e.micro_stop_threshold_s, e.attributes
	FROM equipment e JOIN work_center w ON w.id = e.work_center_id JOIN line l ON l.id = w.line_id
	JOIN area a ON a.id = l.area_id JOIN site s ON s.id = a.site_id`

func scanEquipment(row pgx.CollectableRow) (Equipment, error) {
	var e Equipment
	var attrs []byte
	err := row.Scan(&e.Code, &e.Name, &e.Line, &e.Site, &e.IdealCycleTimeS, &e.MicroStopThreshold, &attrs)
	if len(attrs) > 0 {
		e.Attributes = attrs
	}
	return e, err
}

func (s *Server) listEquipment(w http.ResponseWriter, r *http.Request) {
	var out []Equipment
	err := s.inTenant(r.Context(), false, func(tx pgx.Tx) error {
		rows, err := tx.Query(r.Context(), equipmentSQL+` ORDER BY s.code, l.code, e.code`)
		if err != nil {
			return err
		}
		out, err = pgx.CollectRows(rows, scanEquipment)
		return err
	})
	if err != nil {
		s.fail(w, r, err)
		return
	}
	if out == nil {
		out = []Equipment{}
	}
	writeJSON(w, http.StatusOK, map[string]any{"equipment": out})
}

// getEquipment answers one equipment.
func (s *Server) getEquipment(w http.ResponseWriter, r *http.Request) {
	code := r.PathValue("code")
	var out Equipment
	err := s.inTenant(r.Context(), false, func(tx pgx.Tx) error {
		rows, err := tx.Query(r.Context(), equipmentSQL+` WHERE e.code = $1`, code)
		if err != nil {
			return err
		}
		out, err = pgx.CollectOneRow(rows, scanEquipment)
		if errors.Is(err, pgx.ErrNoRows) {
			return notFound(fmt.Sprintf("equipment %q", code))
		}
		return err
	})
	if err != nil {
		s.fail(w, r, err)
		return
	}
	writeJSON(w, http.StatusOK, out)
}

// patchEquipment changes what OEE needs of an equipment, and audits the change.
func (s *Server) patchEquipment(w http.ResponseWriter, r *http.Request) {
	var body struct {
		IdealCycleTimeS    *float64 `json:"ideal_cycle_time_s"`
		MicroStopThreshold *float64 `json:"micro_stop_threshold_s"`
	}
	if err := decodeBody(w, r, &body); err != nil {
		s.fail(w, r, err)
		return
	}
	if body.IdealCycleTimeS != nil && !(*body.IdealCycleTimeS > 0) {
		s.fail(w, r, badParam("ideal_cycle_time_s", "%v: must be more than 0", *body.IdealCycleTimeS))
		return
	}
	if body.MicroStopThreshold != nil && !(*body.MicroStopThreshold >= 0) {
		s.fail(w, r, badParam("micro_stop_threshold_s", "%v: must be 0 or more", *body.MicroStopThreshold))
		return
	}
	code := r.PathValue("code")
	p := r.Context().Value(principalKey).(principal)
	var after Equipment
	err := s.inTenant(r.Context(), true, func(tx pgx.Tx) error {
		rows, err := tx.Query(r.Context(), equipmentSQL+` WHERE e.code = $1 FOR UPDATE OF e`, code)
		if err != nil {
			return err
		}
		before, err := pgx.CollectOneRow(rows, scanEquipment)
		if errors.Is(err, pgx.ErrNoRows) {
			return notFound(fmt.Sprintf("equipment %q", code))
		}
		if err != nil {
			return err
		}
		after = before
		if body.IdealCycleTimeS != nil {
			after.IdealCycleTimeS = body.IdealCycleTimeS
		}
		if body.MicroStopThreshold != nil {
			after.MicroStopThreshold = *body.MicroStopThreshold
		}
		if _, err := tx.Exec(r.Context(), `UPDATE equipment SET ideal_cycle_time_s = $2, micro_stop_threshold_s = $3, updated_at = now()
			WHERE code = $1`, code, after.IdealCycleTimeS, after.MicroStopThreshold); err != nil {
			return err
		}
		// The figures of every day computed so far depend on what changed.
		if _, err := store.MarkChanged(r.Context(), tx, store.Scope{Tenant: p.tenant, Equipment: code}, time.Time{}, time.Time{}); err != nil {
			return err
		}
		_, err = tx.Exec(r.Context(), `INSERT INTO audit_log (tenant_id, actor, action, entity, entity_id, before, after)
			VALUES ($1, $2, 'update', 'equipment', $3, $4, $5)`, p.tenant, s.actor(p), code, before, after)
		return err
	})
	if err != nil {
		s.fail(w, r, err)
		return
	}
	writeJSON(w, http.StatusOK, after)
}

// intervals returns the equipment's state intervals clipped to [from, to), as the
// windows are computed from them.
func (s *Server) intervals(ctx context.Context, tx pgx.Tx, code string, from, to time.Time) ([]oee.StateInterval, error) {
	if err := scopeExists(ctx, tx, "equipment", code); err != nil {
		return nil, err
	}
	return store.Intervals(ctx, tx, ctx.Value(principalKey).(principal).tenant, code, from, to, s.d.Now())
}

// Interval is the JSON of one stretch of the state timeline.
type Interval struct {
	Start  time.Time `json:"start"`
	End    time.Time `json:"end"`
	State  string    `json:"state"`
	Reason uint32    `json:"reason"`
}

func (s *Server) timeline(w http.ResponseWriter, r *http.Request) {
	from, to, err := rangeParams(r)
	if err != nil {
		s.fail(w, r, err)
		return
	}
	out := []Interval{}
	err = s.inTenant(r.Context(), false, func(tx pgx.Tx) error {
		ivs, err := s.intervals(r.Context(), tx, r.PathValue("code"), from, to)
		for _, iv := range ivs {
			out = append(out, Interval{iv.Start.UTC(), iv.End.UTC(), iv.State.String(), iv.Reason})
		}
		return err
	})
	if err != nil {
		s.fail(w, r, err)
		return
	}
	writeJSON(w, http.StatusOK, map[string]any{"equipment": r.PathValue("code"), "from": from.UTC(), "to": to.UTC(), "intervals": out})
}

// DowntimeReason is one bar of the downtime Pareto.
type DowntimeReason struct {
	State      string  `json:"state"`
	Reason     uint32  `json:"reason"`
	ReasonName string  `json:"reason_name"` // from the tenant's reason catalogue; "" when the code has no name
	DurationS  float64 `json:"duration_s"`
	Count      int     `json:"count"`
}

func (s *Server) downtime(w http.ResponseWriter, r *http.Request) {
	from, to, err := rangeParams(r)
	if err != nil {
		s.fail(w, r, err)
		return
	}
	type key struct {
		state  schemas.StateCategory
		reason uint32
	}
	agg := map[key]*DowntimeReason{}
	err = s.inTenant(r.Context(), false, func(tx pgx.Tx) error {
		ivs, err := s.intervals(r.Context(), tx, r.PathValue("code"), from, to)
		if err != nil {
			return err
		}
		names, err := store.Reasons(r.Context(), tx)
		for _, iv := range ivs {
			if iv.State == schemas.StateRunning || iv.State == schemas.StateUnknown {
				continue
			}
			k := key{iv.State, iv.Reason}
			if agg[k] == nil {
				agg[k] = &DowntimeReason{State: iv.State.String(), Reason: iv.Reason, ReasonName: names[iv.Reason].Name}
			}
			agg[k].DurationS += iv.End.Sub(iv.Start).Seconds()
			agg[k].Count++
		}
		return err
	})
	if err != nil {
		s.fail(w, r, err)
		return
	}
	out := []DowntimeReason{}
	for _, v := range agg {
		out = append(out, *v)
	}
	sort.Slice(out, func(i, j int) bool {
		if out[i].DurationS != out[j].DurationS {
			return out[i].DurationS > out[j].DurationS
		}
		return out[i].State+fmt.Sprint(out[i].Reason) < out[j].State+fmt.Sprint(out[j].Reason)
	})
	writeJSON(w, http.StatusOK, map[string]any{"equipment": r.PathValue("code"), "from": from.UTC(), "to": to.UTC(), "reasons": out})
}

// failures lists the equipment-days whose computation failed and waits for a retry.
func (s *Server) failures(w http.ResponseWriter, r *http.Request) {
	type failure struct {
		Equipment string    `json:"equipment"`
		Day       string    `json:"day"` // UTC day of the data
		Attempts  int       `json:"attempts"`
		Error     string    `json:"error"`
		NextTry   time.Time `json:"next_try"`
	}
	out := []failure{}
	err := s.inTenant(r.Context(), false, func(tx pgx.Tx) error {
		fs, err := store.Failures(r.Context(), tx, 1000)
		for _, f := range fs {
			out = append(out, failure{f.Equipment, f.Day.Day.Format(time.DateOnly), f.Attempts, f.LastError, f.NextTry.UTC()})
		}
		return err
	})
	if err != nil {
		s.fail(w, r, err)
		return
	}
	writeJSON(w, http.StatusOK, map[string]any{"failures": out})
}

// CountBucket is the part counts of one bucket.
type CountBucket = store.CountBucket

func (s *Server) counts(w http.ResponseWriter, r *http.Request) {
	from, to, err := rangeParams(r)
	if err != nil {
		s.fail(w, r, err)
		return
	}
	bucket, err := bucketParam(r)
	if err != nil {
		s.fail(w, r, err)
		return
	}
	var out []CountBucket
	err = s.inTenant(r.Context(), false, func(tx pgx.Tx) error {
		if err := scopeExists(r.Context(), tx, "equipment", r.PathValue("code")); err != nil {
			return err
		}
		out, err = store.Counts(r.Context(), tx, r.Context().Value(principalKey).(principal).tenant, r.PathValue("code"), bucket, from, to)
		return err
	})
	if err != nil {
		s.fail(w, r, err)
		return
	}
	if out == nil {
		out = []CountBucket{}
	}
	writeJSON(w, http.StatusOK, map[string]any{"equipment": r.PathValue("code"), "bucket": bucket, "counts": out})
}
