package server

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"

	"takt.dev/plant/store"
)

// The management endpoints: what OEE needs (sites with their time zone, lines,
// equipment, products, shift calendars, planned stops). Every change is written to
// the audit log, in the same transaction, with the token's name as the actor.

// MaxBody bounds a request body: master data and facts are small.
const MaxBody = 64 << 10

// decodeBody decodes a JSON body of at most MaxBody bytes into v, refusing unknown
// fields: 413 past the bound, 400 naming what is wrong otherwise.
func decodeBody(w http.ResponseWriter, r *http.Request, v any) error {
	dec := json.NewDecoder(http.MaxBytesReader(w, r.Body, MaxBody))
	dec.DisallowUnknownFields()
	if err := dec.Decode(v); err != nil {
		var tooLarge *http.MaxBytesError
		if errors.As(err, &tooLarge) {
			return &apiError{http.StatusRequestEntityTooLarge, "body_too_large", fmt.Sprintf("body: more than %d bytes", MaxBody)}
		}
		return &apiError{http.StatusBadRequest, "bad_body", "body: " + err.Error()}
	}
	return nil
}

// dbError turns the database's refusals into answers that say what was wrong.
func dbError(err error, what string) error {
	var pg *pgconn.PgError
	if !errors.As(err, &pg) {
		return err
	}
	switch pg.Code {
	case "23505":
		return &apiError{http.StatusConflict, "exists", what + " already exists"}
	case "23514":
		return &apiError{http.StatusBadRequest, "invalid", fmt.Sprintf("%s: refused by the rule %s", what, pg.ConstraintName)}
	case "23503":
		return &apiError{http.StatusBadRequest, "invalid", what + ": refers to something that does not exist"}
	case "22007", "22008", "22P02":
		return &apiError{http.StatusBadRequest, "invalid", what + ": " + pg.Message}
	}
	return err
}

// change runs fn as a write in the tenant and audits it: fn returns the entity's id
// and its state before (nil when new) and after.
func (s *Server) change(w http.ResponseWriter, r *http.Request, entity, action string, status int,
	fn func(ctx context.Context, tx pgx.Tx) (id string, before, after any, err error)) {
	s.changeShowing(w, r, entity, action, status, fn, nil)
}

// changeShowing is change answering with shown, when not nil, instead of what the
// audit log keeps (which holds personal data sealed).
func (s *Server) changeShowing(w http.ResponseWriter, r *http.Request, entity, action string, status int,
	fn func(ctx context.Context, tx pgx.Tx) (id string, before, after any, err error), shown any) {
	p := r.Context().Value(principalKey).(principal)
	var after any
	err := s.inTenant(r.Context(), true, func(tx pgx.Tx) error {
		id, before, a, err := fn(r.Context(), tx)
		if err != nil {
			return dbError(err, entity)
		}
		after = a
		_, err = tx.Exec(r.Context(), `INSERT INTO audit_log (tenant_id, actor, action, entity, entity_id, before, after)
			VALUES ($1, $2, $3, $4, $5, $6, $7)`, p.tenant, s.actor(p), action, entity, id, before, a)
		return err
	})
	if err != nil {
		s.fail(w, r, err)
		return
	}
	if shown != nil {
		after = shown
	}
	writeJSON(w, status, after)
}

func (s *Server) list(w http.ResponseWriter, r *http.Request, key, query string, args ...any) {
	var out []map[string]any
	err := s.inTenant(r.Context(), false, func(tx pgx.Tx) error {
		rows, err := tx.Query(r.Context(), query, args...)
		if err != nil {
			return err
		}
		out, err = pgx.CollectRows(rows, pgx.RowToMap)
		return err
	})
	if err != nil {
		s.fail(w, r, err)
		return
	}
	if out == nil {
		out = []map[string]any{}
	}
	writeJSON(w, http.StatusOK, map[string]any{key: out})
}

// Site is a plant with its time zone, which aligns its OEE windows.
type Site struct {
	Code     string `json:"code"`
	Name     string `json:"name"`
	TimeZone string `json:"time_zone"`
}

func (s *Server) listSites(w http.ResponseWriter, r *http.Request) {
	s.list(w, r, "sites", `SELECT code, name, time_zone FROM site ORDER BY code`)
}

func (s *Server) createSite(w http.ResponseWriter, r *http.Request) {
	var in Site
	if err := decodeBody(w, r, &in); err != nil {
		s.fail(w, r, err)
		return
	}
	if _, err := time.LoadLocation(in.TimeZone); err != nil || in.TimeZone == "" {
		s.fail(w, r, badParam("time_zone", "%q is not an IANA time zone (such as Europe/Paris)", in.TimeZone))
		return
	}
	s.change(w, r, "site", "insert", http.StatusCreated, func(ctx context.Context, tx pgx.Tx) (string, any, any, error) {
		p := ctx.Value(principalKey).(principal)
		_, err := tx.Exec(ctx, `INSERT INTO site (tenant_id, code, name, time_zone) VALUES ($1, $2, $3, $4)`, p.tenant, in.Code, in.Name, in.TimeZone)
		return in.Code, nil, in, err
	})
}

func (s *Server) patchSite(w http.ResponseWriter, r *http.Request) {
	var in struct {
		Name     *string `json:"name"`
		TimeZone *string `json:"time_zone"`
	}
	if err := decodeBody(w, r, &in); err != nil {
		s.fail(w, r, err)
		return
	}
	if in.TimeZone != nil {
		if _, err := time.LoadLocation(*in.TimeZone); err != nil || *in.TimeZone == "" {
			s.fail(w, r, badParam("time_zone", "%q is not an IANA time zone (such as Europe/Paris)", *in.TimeZone))
			return
		}
	}
	code := r.PathValue("code")
	s.change(w, r, "site", "update", http.StatusOK, func(ctx context.Context, tx pgx.Tx) (string, any, any, error) {
		var before Site
		err := tx.QueryRow(ctx, `SELECT code, name, time_zone FROM site WHERE code = $1 FOR UPDATE`, code).Scan(&before.Code, &before.Name, &before.TimeZone)
		if errors.Is(err, pgx.ErrNoRows) {
			return "", nil, nil, notFound(fmt.Sprintf("site %q", code))
		}
		after := before
		if in.Name != nil {
			after.Name = *in.Name
		}
		if in.TimeZone != nil {
			after.TimeZone = *in.TimeZone
		}
		_, err = tx.Exec(ctx, `UPDATE site SET name = $2, time_zone = $3, updated_at = now() WHERE code = $1`, code, after.Name, after.TimeZone)
		if err == nil && after.TimeZone != before.TimeZone { // every window moves
			_, err = store.MarkChanged(ctx, tx, store.Scope{Tenant: ctx.Value(principalKey).(principal).tenant, Site: code}, time.Time{}, time.Time{})
		}
		return code, before, after, err
	})
}

// Line is a production line (created with its area when the area is new).
type Line struct {
	Site string `json:"site"`
	Area string `json:"area"`
	Code string `json:"code"`
	Name string `json:"name"`
}

func (s *Server) listLines(w http.ResponseWriter, r *http.Request) {
	s.list(w, r, "lines", `SELECT s.code AS site, a.code AS area, l.code, l.name FROM line l JOIN area a ON a.id = l.area_id
		JOIN site s ON s.id = a.site_id ORDER BY s.code, a.code, l.code`)
}

func (s *Server) createLine(w http.ResponseWriter, r *http.Request) {
	var in Line
	if err := decodeBody(w, r, &in); err != nil {
		s.fail(w, r, err)
		return
	}
	s.change(w, r, "line", "insert", http.StatusCreated, func(ctx context.Context, tx pgx.Tx) (string, any, any, error) {
		p := ctx.Value(principalKey).(principal)
		var siteID int64
		if err := tx.QueryRow(ctx, `SELECT id FROM site WHERE code = $1`, in.Site).Scan(&siteID); errors.Is(err, pgx.ErrNoRows) {
			return "", nil, nil, badParam("site", "%q does not exist", in.Site)
		} else if err != nil {
			return "", nil, nil, err
		}
		_, err := tx.Exec(ctx, `WITH a AS (
				INSERT INTO area (tenant_id, site_id, code, name) VALUES ($1, $2, $3, $3)
				ON CONFLICT (tenant_id, site_id, code) DO UPDATE SET code = EXCLUDED.code RETURNING id)
			INSERT INTO line (tenant_id, area_id, code, name) SELECT $1, id, $4, $5 FROM a`, p.tenant, siteID, in.Area, in.Code, in.Name)
		return in.Code, nil, in, err
	})
}

// NewEquipment is the body that creates an equipment (with a work center named
// after it when none is given).
type NewEquipment struct {
	Code               string   `json:"code"`
	Name               string   `json:"name"`
	Site               string   `json:"site,omitempty"` // the line's site; needed when sites share line codes
	Line               string   `json:"line"`
	WorkCenter         string   `json:"work_center"`
	IdealCycleTimeS    *float64 `json:"ideal_cycle_time_s"`
	MicroStopThreshold *float64 `json:"micro_stop_threshold_s"`
}

func (s *Server) createEquipment(w http.ResponseWriter, r *http.Request) {
	var in NewEquipment
	if err := decodeBody(w, r, &in); err != nil {
		s.fail(w, r, err)
		return
	}
	if in.WorkCenter == "" {
		in.WorkCenter = in.Code
	}
	if in.MicroStopThreshold == nil {
		v := 120.0
		in.MicroStopThreshold = &v
	}
	s.change(w, r, "equipment", "insert", http.StatusCreated, func(ctx context.Context, tx pgx.Tx) (string, any, any, error) {
		p := ctx.Value(principalKey).(principal)
		lineID, err := lineOf(ctx, tx, in.Site, in.Line)
		if err != nil {
			return "", nil, nil, err
		}
		_, err = tx.Exec(ctx, `WITH w AS (
				INSERT INTO work_center (tenant_id, line_id, code, name) VALUES ($1, $2, $3, $3)
				ON CONFLICT (tenant_id, line_id, code) DO UPDATE SET code = EXCLUDED.code RETURNING id)
			INSERT INTO equipment (tenant_id, work_center_id, code, name, ideal_cycle_time_s, micro_stop_threshold_s)
			SELECT $1, id, $4, $5, $6, $7 FROM w`, p.tenant, lineID, in.WorkCenter, in.Code, in.Name, in.IdealCycleTimeS, in.MicroStopThreshold)
		return in.Code, nil, in, err
	})
}

// lineOf resolves a line code within its site: a line code alone must name one line,
// since sites may share line codes.
func lineOf(ctx context.Context, tx pgx.Tx, site, line string) (int64, error) {
	rows, err := tx.Query(ctx, `SELECT l.id, s.code FROM line l JOIN area a ON a.id = l.area_id JOIN site s ON s.id = a.site_id
		WHERE l.code = $1 AND ($2 = '' OR s.code = $2)`, line, site)
	if err != nil {
		return 0, err
	}
	type hit struct {
		id   int64
		site string
	}
	hits, err := pgx.CollectRows(rows, func(row pgx.CollectableRow) (hit, error) {
		var h hit
		err := row.Scan(&h.id, &h.site)
		return h, err
	})
	switch {
	case err != nil:
		return 0, err
	case len(hits) == 0 && site != "":
		return 0, badParam("line", "%q does not exist at site %q", line, site)
	case len(hits) == 0:
		return 0, badParam("line", "%q does not exist", line)
	case len(hits) > 1:
		var sites []string
		for _, h := range hits {
			sites = append(sites, h.site)
		}
		return 0, &apiError{http.StatusConflict, "ambiguous", fmt.Sprintf("line %q exists at sites %v: name the site (\"site\")", line, sites)}
	}
	return hits[0].id, nil
}

// patchLine renames a line (?site= when sites share its code).
func (s *Server) patchLine(w http.ResponseWriter, r *http.Request) {
	var in struct {
		Name string `json:"name"`
	}
	if err := decodeBody(w, r, &in); err != nil {
		s.fail(w, r, err)
		return
	}
	if in.Name == "" {
		s.fail(w, r, badParam("name", "missing"))
		return
	}
	code, site := r.PathValue("code"), r.URL.Query().Get("site")
	s.change(w, r, "line", "update", http.StatusOK, func(ctx context.Context, tx pgx.Tx) (string, any, any, error) {
		id, err := lineOf(ctx, tx, site, code)
		if err != nil {
			return "", nil, nil, notFoundOr(err)
		}
		var before Line
		if err := tx.QueryRow(ctx, `SELECT s.code, a.code, l.code, l.name FROM line l JOIN area a ON a.id = l.area_id JOIN site s ON s.id = a.site_id
			WHERE l.id = $1`, id).Scan(&before.Site, &before.Area, &before.Code, &before.Name); err != nil {
			return "", nil, nil, err
		}
		after := before
		after.Name = in.Name
		_, err = tx.Exec(ctx, `UPDATE line SET name = $2 WHERE id = $1`, id, in.Name)
		return code, before, after, err
	})
}

// deleteLine removes a line without equipment.
func (s *Server) deleteLine(w http.ResponseWriter, r *http.Request) {
	code, site := r.PathValue("code"), r.URL.Query().Get("site")
	s.change(w, r, "line", "delete", http.StatusOK, func(ctx context.Context, tx pgx.Tx) (string, any, any, error) {
		id, err := lineOf(ctx, tx, site, code)
		if err != nil {
			return "", nil, nil, notFoundOr(err)
		}
		var n int
		if err := tx.QueryRow(ctx, `SELECT count(*) FROM equipment e JOIN work_center w ON w.id = e.work_center_id WHERE w.line_id = $1`, id).Scan(&n); err != nil {
			return "", nil, nil, err
		}
		if n > 0 {
			return "", nil, nil, &apiError{http.StatusConflict, "in_use", fmt.Sprintf("line %q has %d equipment: delete or move them first", code, n)}
		}
		if _, err := tx.Exec(ctx, `DELETE FROM work_center WHERE line_id = $1`, id); err != nil {
			return "", nil, nil, err
		}
		_, err = tx.Exec(ctx, `DELETE FROM line WHERE id = $1`, id)
		return code, map[string]string{"code": code, "site": site}, nil, err
	})
}

// notFoundOr turns "does not exist" parameter errors of path lookups into 404s.
func notFoundOr(err error) error {
	var ae *apiError
	if errors.As(err, &ae) && ae.status == http.StatusBadRequest {
		return &apiError{http.StatusNotFound, "not_found", ae.message}
	}
	return err
}

// deleteEquipment removes an equipment that has no production runs, stops or events
// recorded against it (its telemetry and windows stay, keyed by its code).
func (s *Server) deleteEquipment(w http.ResponseWriter, r *http.Request) {
	code := r.PathValue("code")
	s.change(w, r, "equipment", "delete", http.StatusOK, func(ctx context.Context, tx pgx.Tx) (string, any, any, error) {
		rows, err := tx.Query(ctx, equipmentSQL+` WHERE e.code = $1 FOR UPDATE OF e`, code)
		if err != nil {
			return "", nil, nil, err
		}
		before, err := pgx.CollectOneRow(rows, scanEquipment)
		if errors.Is(err, pgx.ErrNoRows) {
			return "", nil, nil, notFound(fmt.Sprintf("equipment %q", code))
		}
		if err != nil {
			return "", nil, nil, err
		}
		if _, err := tx.Exec(ctx, `DELETE FROM equipment WHERE code = $1`, code); err != nil {
			if isFK(err) {
				return "", nil, nil, &apiError{http.StatusConflict, "in_use", fmt.Sprintf("equipment %q has production runs, planned stops, downtime or maintenance recorded: delete them first", code)}
			}
			return "", nil, nil, err
		}
		return code, before, nil, nil
	})
}

func isFK(err error) bool {
	var pg *pgconn.PgError
	return errors.As(err, &pg) && pg.Code == "23503"
}

// patchProduct renames a product or changes its ideal cycle time; the days its runs
// touched are recomputed.
func (s *Server) patchProduct(w http.ResponseWriter, r *http.Request) {
	var in struct {
		Name            *string  `json:"name"`
		IdealCycleTimeS *float64 `json:"ideal_cycle_time_s"`
	}
	if err := decodeBody(w, r, &in); err != nil {
		s.fail(w, r, err)
		return
	}
	if in.IdealCycleTimeS != nil && !(*in.IdealCycleTimeS > 0) {
		s.fail(w, r, badParam("ideal_cycle_time_s", "%v: must be more than 0", *in.IdealCycleTimeS))
		return
	}
	code := r.PathValue("code")
	s.change(w, r, "product", "update", http.StatusOK, func(ctx context.Context, tx pgx.Tx) (string, any, any, error) {
		var before Product
		err := tx.QueryRow(ctx, `SELECT code, name, ideal_cycle_time_s FROM product WHERE code = $1 FOR UPDATE`, code).Scan(&before.Code, &before.Name, &before.IdealCycleTimeS)
		if errors.Is(err, pgx.ErrNoRows) {
			return "", nil, nil, notFound(fmt.Sprintf("product %q", code))
		}
		if err != nil {
			return "", nil, nil, err
		}
		after := before
		if in.Name != nil {
			after.Name = *in.Name
		}
		if in.IdealCycleTimeS != nil {
			after.IdealCycleTimeS = *in.IdealCycleTimeS
		}
		if _, err := tx.Exec(ctx, `UPDATE product SET name = $2, ideal_cycle_time_s = $3 WHERE code = $1`, code, after.Name, after.IdealCycleTimeS); err != nil {
			return "", nil, nil, err
		}
		if after.IdealCycleTimeS != before.IdealCycleTimeS {
			if _, err := store.MarkProductRuns(ctx, tx, code); err != nil {
				return "", nil, nil, err
			}
		}
		return code, before, after, nil
	})
}

// deleteProduct removes a product no run refers to.
func (s *Server) deleteProduct(w http.ResponseWriter, r *http.Request) {
	code := r.PathValue("code")
	s.change(w, r, "product", "delete", http.StatusOK, func(ctx context.Context, tx pgx.Tx) (string, any, any, error) {
		var before Product
		err := tx.QueryRow(ctx, `DELETE FROM product WHERE code = $1 RETURNING code, name, ideal_cycle_time_s`, code).Scan(&before.Code, &before.Name, &before.IdealCycleTimeS)
		switch {
		case errors.Is(err, pgx.ErrNoRows):
			return "", nil, nil, notFound(fmt.Sprintf("product %q", code))
		case isFK(err):
			return "", nil, nil, &apiError{http.StatusConflict, "in_use", fmt.Sprintf("product %q has production runs: delete them first", code)}
		}
		return code, before, nil, err
	})
}

// Product is something made, with its ideal cycle time.
type Product struct {
	Code            string  `json:"code"`
	Name            string  `json:"name"`
	IdealCycleTimeS float64 `json:"ideal_cycle_time_s"`
}

func (s *Server) listProducts(w http.ResponseWriter, r *http.Request) {
	s.list(w, r, "products", `SELECT code, name, ideal_cycle_time_s FROM product ORDER BY code`)
}

func (s *Server) createProduct(w http.ResponseWriter, r *http.Request) {
	var in Product
	if err := decodeBody(w, r, &in); err != nil {
		s.fail(w, r, err)
		return
	}
	s.change(w, r, "product", "insert", http.StatusCreated, func(ctx context.Context, tx pgx.Tx) (string, any, any, error) {
		p := ctx.Value(principalKey).(principal)
		_, err := tx.Exec(ctx, `INSERT INTO product (tenant_id, code, name, ideal_cycle_time_s) VALUES ($1, $2, $3, $4)`,
			p.tenant, in.Code, in.Name, in.IdealCycleTimeS)
		return in.Code, nil, in, err
	})
}

// Shift is a shift pattern of a site's calendar, with its planned breaks.
type Shift struct {
	ID       int64        `json:"id"` // read-only
	Name     string       `json:"name"`
	StartsAt string       `json:"starts_at"` // local time, HH:MM
	Duration string       `json:"duration"`  // HH:MM:SS (8h is also accepted)
	Weekdays []int        `json:"weekdays"`  // ISO: 1 = Monday ... 7 = Sunday
	Breaks   []ShiftBreak `json:"breaks"`
	// The local dates the pattern applies on, inclusive (YYYY-MM-DD); a past day is
	// computed with the patterns valid on it. Default: from 2000-01-01, open-ended.
	ValidFrom string  `json:"valid_from"`
	ValidTo   *string `json:"valid_to"`
}

// parseDuration reads a duration as this API writes it (HH:MM:SS) or as Go does (8h,
// 30m).
func parseDuration(v string) (time.Duration, error) {
	var h, m, sec int
	if n, err := fmt.Sscanf(v, "%d:%d:%d", &h, &m, &sec); err == nil && n == 3 && m < 60 && sec < 60 && h >= 0 {
		return time.Duration(h)*time.Hour + time.Duration(m)*time.Minute + time.Duration(sec)*time.Second, nil
	}
	return time.ParseDuration(v)
}

// ShiftBreak is a planned break within a shift.
type ShiftBreak struct {
	Name     string `json:"name"`
	Offset   string `json:"offset"`   // after the shift's start, HH:MM:SS (4h is also accepted)
	Duration string `json:"duration"` // HH:MM:SS (30m is also accepted)
}

func (s *Server) listShifts(w http.ResponseWriter, r *http.Request) {
	s.list(w, r, "shifts", `SELECT p.id, p.name, to_char(p.starts_at, 'HH24:MI') AS starts_at, to_char(p.duration, 'HH24:MI:SS') AS duration, p.weekdays,
		coalesce((SELECT json_agg(json_build_object('name', b.name, 'offset', to_char(b.start_offset, 'HH24:MI:SS'), 'duration', to_char(b.duration, 'HH24:MI:SS')))
			FROM planned_break b WHERE b.shift_pattern_id = p.id), '[]') AS breaks,
		p.valid_from::text AS valid_from, p.valid_to::text AS valid_to
		FROM shift_pattern p JOIN site s ON s.id = p.site_id WHERE s.code = $1 ORDER BY p.starts_at, p.valid_from`, r.PathValue("code"))
}

func (s *Server) createShift(w http.ResponseWriter, r *http.Request) {
	var in Shift
	if err := decodeBody(w, r, &in); err != nil {
		s.fail(w, r, err)
		return
	}
	start, err := time.Parse("15:04", in.StartsAt)
	if err != nil {
		s.fail(w, r, badParam("starts_at", "%q: want HH:MM", in.StartsAt))
		return
	}
	dur, err := parseDuration(in.Duration)
	if err != nil || dur <= 0 || dur > 24*time.Hour {
		s.fail(w, r, badParam("duration", "%q: want a duration up to 24h, such as 8h", in.Duration))
		return
	}
	if len(in.Weekdays) == 0 {
		in.Weekdays = []int{1, 2, 3, 4, 5}
	}
	if in.Breaks == nil {
		in.Breaks = []ShiftBreak{}
	}
	for _, d := range in.Weekdays {
		if d < 1 || d > 7 {
			s.fail(w, r, badParam("weekdays", "%d: want 1 (Monday) to 7 (Sunday)", d))
			return
		}
	}
	type brk struct {
		name     string
		off, dur time.Duration
	}
	var breaks []brk
	for i, b := range in.Breaks {
		off, e1 := parseDuration(b.Offset)
		bd, e2 := parseDuration(b.Duration)
		if e1 != nil || e2 != nil || off < 0 || bd <= 0 || off+bd > dur {
			s.fail(w, r, badParam(fmt.Sprintf("breaks[%d]", i), "offset %q and duration %q must be durations within the shift", b.Offset, b.Duration))
			return
		}
		breaks = append(breaks, brk{b.Name, off, bd})
	}
	if in.ValidFrom == "" {
		in.ValidFrom = "2000-01-01"
	}
	validFrom, err := time.Parse(time.DateOnly, in.ValidFrom)
	if err != nil {
		s.fail(w, r, badParam("valid_from", "%q: want a date YYYY-MM-DD", in.ValidFrom))
		return
	}
	var validTo *time.Time
	if in.ValidTo != nil {
		t, err := time.Parse(time.DateOnly, *in.ValidTo)
		if err != nil || t.Before(validFrom) {
			s.fail(w, r, badParam("valid_to", "%q: want a date YYYY-MM-DD, not before valid_from", *in.ValidTo))
			return
		}
		validTo = &t
	}
	site := r.PathValue("code")
	s.change(w, r, "shift_pattern", "insert", http.StatusCreated, func(ctx context.Context, tx pgx.Tx) (string, any, any, error) {
		p := ctx.Value(principalKey).(principal)
		var id int64
		err := tx.QueryRow(ctx, `INSERT INTO shift_pattern (tenant_id, site_id, name, starts_at, duration, weekdays, valid_from, valid_to)
			SELECT $1, id, $3, $4::time, make_interval(secs => $5), $6, $7, $8 FROM site WHERE code = $2 RETURNING id`,
			p.tenant, site, in.Name, start.Format("15:04"), dur.Seconds(), in.Weekdays, validFrom, validTo).Scan(&id)
		if errors.Is(err, pgx.ErrNoRows) {
			return "", nil, nil, notFound(fmt.Sprintf("site %q", site))
		}
		if err != nil {
			return "", nil, nil, err
		}
		for _, b := range breaks {
			if _, err := tx.Exec(ctx, `INSERT INTO planned_break (tenant_id, shift_pattern_id, name, start_offset, duration)
				VALUES ($1, $2, $3, make_interval(secs => $4), make_interval(secs => $5))`, p.tenant, id, b.name, b.off.Seconds(), b.dur.Seconds()); err != nil {
				return "", nil, nil, err
			}
		}
		if err := markShift(ctx, tx, p.tenant, site, validFrom, validTo); err != nil {
			return "", nil, nil, err
		}
		in.ID = id
		return fmt.Sprint(id), nil, in, nil
	})
}

// markShift marks the days of a site's equipment that a shift pattern valid from
// validFrom to validTo (nil: open) touches, a day before and after included.
func markShift(ctx context.Context, tx pgx.Tx, tenant, site string, validFrom time.Time, validTo *time.Time) error {
	to := time.Time{}
	if validTo != nil {
		to = validTo.Add(48 * time.Hour)
	}
	_, err := store.MarkChanged(ctx, tx, store.Scope{Tenant: tenant, Site: site}, validFrom.Add(-24*time.Hour), to)
	return err
}

// patchShift renames a shift pattern or changes the dates it is valid on (to end a
// calendar: valid_to), and recomputes the days it touched before and after.
func (s *Server) patchShift(w http.ResponseWriter, r *http.Request) {
	var in struct {
		Name      *string `json:"name"`
		ValidFrom *string `json:"valid_from"`
		ValidTo   *string `json:"valid_to"` // "" reopens it
	}
	if err := decodeBody(w, r, &in); err != nil {
		s.fail(w, r, err)
		return
	}
	site, id := r.PathValue("code"), r.PathValue("id")
	s.change(w, r, "shift_pattern", "update", http.StatusOK, func(ctx context.Context, tx pgx.Tx) (string, any, any, error) {
		p := ctx.Value(principalKey).(principal)
		var before Shift
		var from time.Time
		var to *time.Time
		err := tx.QueryRow(ctx, `SELECT p.id, p.name, to_char(p.starts_at, 'HH24:MI'), to_char(p.duration, 'HH24:MI:SS'), p.weekdays, p.valid_from, p.valid_to
			FROM shift_pattern p JOIN site s ON s.id = p.site_id WHERE s.code = $1 AND p.id::text = $2 FOR UPDATE OF p`, site, id).
			Scan(&before.ID, &before.Name, &before.StartsAt, &before.Duration, &before.Weekdays, &from, &to)
		if errors.Is(err, pgx.ErrNoRows) {
			return "", nil, nil, notFound(fmt.Sprintf("shift %s of site %q", id, site))
		}
		if err != nil {
			return "", nil, nil, err
		}
		before.ValidFrom = from.Format(time.DateOnly)
		if to != nil {
			v := to.Format(time.DateOnly)
			before.ValidTo = &v
		}
		rows, err := tx.Query(ctx, `SELECT name, to_char(start_offset, 'HH24:MI:SS'), to_char(duration, 'HH24:MI:SS') FROM planned_break
			WHERE shift_pattern_id = $1 ORDER BY start_offset`, before.ID)
		if err != nil {
			return "", nil, nil, err
		}
		if before.Breaks, err = pgx.CollectRows(rows, pgx.RowToStructByPos[ShiftBreak]); err != nil {
			return "", nil, nil, err
		}
		if before.Breaks == nil {
			before.Breaks = []ShiftBreak{}
		}
		if err := markShift(ctx, tx, p.tenant, site, from, to); err != nil {
			return "", nil, nil, err
		}
		after := before
		if in.Name != nil {
			after.Name = *in.Name
		}
		if in.ValidFrom != nil {
			if from, err = time.Parse(time.DateOnly, *in.ValidFrom); err != nil {
				return "", nil, nil, badParam("valid_from", "%q: want a date YYYY-MM-DD", *in.ValidFrom)
			}
			after.ValidFrom = *in.ValidFrom
		}
		if in.ValidTo != nil {
			to, after.ValidTo = nil, nil
			if *in.ValidTo != "" {
				t, err := time.Parse(time.DateOnly, *in.ValidTo)
				if err != nil {
					return "", nil, nil, badParam("valid_to", "%q: want a date YYYY-MM-DD, or \"\" for open-ended", *in.ValidTo)
				}
				to, after.ValidTo = &t, in.ValidTo
			}
		}
		if to != nil && to.Before(from) {
			return "", nil, nil, badParam("valid_to", "before valid_from %s", after.ValidFrom)
		}
		if _, err := tx.Exec(ctx, `UPDATE shift_pattern SET name = $2, valid_from = $3, valid_to = $4 WHERE id = $1`, before.ID, after.Name, from, to); err != nil {
			return "", nil, nil, err
		}
		return id, before, after, markShift(ctx, tx, p.tenant, site, from, to)
	})
}

// deleteSite removes a site without lines (its shift calendar goes with it).
func (s *Server) deleteSite(w http.ResponseWriter, r *http.Request) {
	code := r.PathValue("code")
	s.change(w, r, "site", "delete", http.StatusOK, func(ctx context.Context, tx pgx.Tx) (string, any, any, error) {
		var lines int
		if err := tx.QueryRow(ctx, `SELECT count(*) FROM line l JOIN area a ON a.id = l.area_id JOIN site s ON s.id = a.site_id WHERE s.code = $1`, code).Scan(&lines); err != nil {
			return "", nil, nil, err
		}
		if lines > 0 {
			return "", nil, nil, &apiError{http.StatusConflict, "in_use", fmt.Sprintf("site %q has %d lines: delete them first", code, lines)}
		}
		var before Site
		err := tx.QueryRow(ctx, `DELETE FROM site WHERE code = $1 RETURNING code, name, time_zone`, code).Scan(&before.Code, &before.Name, &before.TimeZone)
		switch {
		case errors.Is(err, pgx.ErrNoRows):
			return "", nil, nil, notFound(fmt.Sprintf("site %q", code))
		case isFK(err):
			return "", nil, nil, &apiError{http.StatusConflict, "in_use", fmt.Sprintf("site %q has areas, lines or shifts: delete them first", code)}
		}
		return code, before, nil, err
	})
}

// deleteShift removes a shift pattern (and its breaks) and recomputes what it touched.
func (s *Server) deleteShift(w http.ResponseWriter, r *http.Request) {
	site, id := r.PathValue("code"), r.PathValue("id")
	s.change(w, r, "shift_pattern", "delete", http.StatusOK, func(ctx context.Context, tx pgx.Tx) (string, any, any, error) {
		p := ctx.Value(principalKey).(principal)
		var before Shift
		var validFrom time.Time
		var validTo *time.Time
		err := tx.QueryRow(ctx, `DELETE FROM shift_pattern p USING site s WHERE s.id = p.site_id AND s.code = $1 AND p.id::text = $2
			RETURNING p.id, p.name, to_char(p.starts_at, 'HH24:MI'), to_char(p.duration, 'HH24:MI:SS'), p.weekdays, p.valid_from, p.valid_to`,
			site, id).Scan(&before.ID, &before.Name, &before.StartsAt, &before.Duration, &before.Weekdays, &validFrom, &validTo)
		if errors.Is(err, pgx.ErrNoRows) {
			return "", nil, nil, notFound(fmt.Sprintf("shift %s of site %q", id, site))
		}
		if err != nil {
			return "", nil, nil, err
		}
		before.ValidFrom = validFrom.Format(time.DateOnly)
		return id, before, nil, markShift(ctx, tx, p.tenant, site, validFrom, validTo)
	})
}

// PlannedStop is a one-off planned stop of an equipment.
type PlannedStop struct {
	ID     int64     `json:"id"` // read-only
	Start  time.Time `json:"start"`
	End    time.Time `json:"end"`
	Reason string    `json:"reason"`
}

func (s *Server) listPlannedStops(w http.ResponseWriter, r *http.Request) {
	s.list(w, r, "planned_stops", `SELECT p.id, p.starts_at AS start, p.ends_at AS end, p.reason FROM planned_stop p
		JOIN equipment e ON e.id = p.equipment_id WHERE e.code = $1 ORDER BY p.starts_at`, r.PathValue("code"))
}

func (s *Server) createPlannedStop(w http.ResponseWriter, r *http.Request) {
	var in PlannedStop
	if err := decodeBody(w, r, &in); err != nil {
		s.fail(w, r, err)
		return
	}
	if !in.End.After(in.Start) {
		s.fail(w, r, badParam("end", "must be after start"))
		return
	}
	code := r.PathValue("code")
	s.change(w, r, "planned_stop", "insert", http.StatusCreated, func(ctx context.Context, tx pgx.Tx) (string, any, any, error) {
		p := ctx.Value(principalKey).(principal)
		var id int64
		err := tx.QueryRow(ctx, `INSERT INTO planned_stop (tenant_id, equipment_id, starts_at, ends_at, reason)
			SELECT $1, id, $3, $4, $5 FROM equipment WHERE code = $2 RETURNING id`, p.tenant, code, in.Start, in.End, in.Reason).Scan(&id)
		if errors.Is(err, pgx.ErrNoRows) {
			return "", nil, nil, notFound(fmt.Sprintf("equipment %q", code))
		}
		if err == nil {
			_, err = store.MarkChanged(ctx, tx, store.Scope{Tenant: p.tenant, Equipment: code}, in.Start, in.End)
		}
		in.ID = id
		return fmt.Sprint(id), nil, in, err
	})
}

// changePlannedStop moves (PATCH) or removes (DELETE) a planned stop; the days it
// touched before and after are recomputed.
func (s *Server) changePlannedStop(w http.ResponseWriter, r *http.Request) {
	var in struct {
		Start  *time.Time `json:"start"`
		End    *time.Time `json:"end"`
		Reason *string    `json:"reason"`
	}
	if r.Method == http.MethodPatch {
		if err := decodeBody(w, r, &in); err != nil {
			s.fail(w, r, err)
			return
		}
	}
	code, id := r.PathValue("code"), r.PathValue("id")
	action := map[string]string{http.MethodPatch: "update", http.MethodDelete: "delete"}[r.Method]
	s.change(w, r, "planned_stop", action, http.StatusOK, func(ctx context.Context, tx pgx.Tx) (string, any, any, error) {
		p := ctx.Value(principalKey).(principal)
		var before PlannedStop
		err := tx.QueryRow(ctx, `SELECT p.id, p.starts_at, p.ends_at, p.reason FROM planned_stop p JOIN equipment e ON e.id = p.equipment_id
			WHERE e.code = $1 AND p.id::text = $2 FOR UPDATE OF p`, code, id).Scan(&before.ID, &before.Start, &before.End, &before.Reason)
		if errors.Is(err, pgx.ErrNoRows) {
			return "", nil, nil, notFound(fmt.Sprintf("planned stop %s of equipment %q", id, code))
		}
		if err != nil {
			return "", nil, nil, err
		}
		if _, err := store.MarkChanged(ctx, tx, store.Scope{Tenant: p.tenant, Equipment: code}, before.Start, before.End); err != nil {
			return "", nil, nil, err
		}
		if r.Method == http.MethodDelete {
			_, err = tx.Exec(ctx, `DELETE FROM planned_stop WHERE id = $1`, before.ID)
			return id, before, nil, err
		}
		after := before
		if in.Start != nil {
			after.Start = *in.Start
		}
		if in.End != nil {
			after.End = *in.End
		}
		if in.Reason != nil {
			after.Reason = *in.Reason
		}
		if !after.End.After(after.Start) {
			return "", nil, nil, badParam("end", "must be after start")
		}
		if _, err := tx.Exec(ctx, `UPDATE planned_stop SET starts_at = $2, ends_at = $3, reason = $4 WHERE id = $1`, before.ID, after.Start, after.End, after.Reason); err != nil {
			return "", nil, nil, err
		}
		_, err = store.MarkChanged(ctx, tx, store.Scope{Tenant: p.tenant, Equipment: code}, after.Start, after.End)
		return id, before, after, err
	})
}
