// Package store is the only SQL against the plant tables that OEE depends on: state
// observations and counter readings, the equipment-days to recompute, and the
// computed windows. The aggregator writes through it, the API reads through it and
// marks days for recomputation when master data changes; neither writes this SQL
// itself.
//
// Contract: Save writes observations and dirty marks in one transaction. A state
// holds until the equipment's next state observation, so an observation marks every
// UTC day from its own up to the next observation (or now). RecomputeNext claims one
// dirty equipment-day (FOR UPDATE SKIP LOCKED, so several aggregators share the work),
// computes its windows from everything stored, upserts them and removes the mark in
// one transaction; a crash in between leaves the mark and the day is computed again.
// A day whose computation fails is set aside with its error and retried with backoff,
// so it never blocks other days, equipment or tenants. Replaying the topic gives the
// same observations, so the same table.
package store

import (
	"context"
	"errors"
	"fmt"
	"strconv"
	"strings"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"
	"github.com/jackc/pgx/v5/pgxpool"

	"takt.dev/plant/oee"
	"takt.dev/plant/windows"
	"takt.dev/schemas"
	"takt.dev/servicekit"
)

// Querier is what the read functions need: a pool or a transaction (the API's, with
// the tenant set for row-level security).
type Querier interface {
	Query(ctx context.Context, sql string, args ...any) (pgx.Rows, error)
	QueryRow(ctx context.Context, sql string, args ...any) pgx.Row
	Exec(ctx context.Context, sql string, args ...any) (pgconn.CommandTag, error)
}

// MaxCarryDays bounds how many days one state observation marks for recomputation
// (the state holds until the next observation, however far).
const MaxCarryDays = 400

// Store reads and writes the plant's OEE tables, as a login role of takt_aggregator
// or their owner (migration 00019).
type Store struct {
	Pool *pgxpool.Pool

	// OnUnknownTenant is called for a dirty day dropped because its tenant is not
	// registered (its observations are kept for when it is); nil ignores it.
	OnUnknownTenant func()

	// Now is the clock that ends the last state (default time.Now).
	Now func() time.Time

	// OnAnomaly is called once per computed equipment-day and anomaly its windows
	// carry (AnomalyGoodAboveTotal, ...); nil ignores them.
	OnAnomaly func(anomaly string)
}

// CheckRole returns an error naming what is missing when the store's role could not
// do the aggregator's work on any day (a refusal that no retry would cure). It
// returns nil when the role can, and when the database cannot be reached: the
// caller's retries then handle that as any transient error.
func (s *Store) CheckRole(ctx context.Context) error {
	var role string
	var ok bool
	err := s.Pool.QueryRow(ctx, `SELECT current_user, has_table_privilege('state_observation', 'INSERT')
		AND has_table_privilege('oee_window', 'INSERT, DELETE') AND has_table_privilege('oee_dirty', 'UPDATE, DELETE')
		AND has_table_privilege('equipment', 'SELECT') AND (NOT row_security_active('oee_dirty')
		OR pg_has_role('takt_aggregator', 'USAGE'))`).Scan(&role, &ok)
	var pgErr *pgconn.PgError
	switch {
	case errors.As(err, &pgErr):
		return fmt.Errorf("checking the database role's privileges: %w (are the migrations applied? takt-migrate up)", err)
	case err == nil && !ok:
		return fmt.Errorf("database role %q lacks the aggregator's privileges: make it a member of takt_aggregator (GRANT takt_aggregator TO %s; see docs/security.md)", role, role)
	}
	return nil
}

func (s *Store) now() time.Time {
	if s.Now == nil {
		return time.Now()
	}
	return s.Now()
}

// Day is one equipment-day to compute: the UTC day of the data.
type Day struct {
	Tenant, Equipment string
	Day               time.Time
}

func (d Day) String() string {
	return fmt.Sprintf("%s/%s %s", d.Tenant, d.Equipment, d.Day.Format(time.DateOnly))
}

// markForward is the SQL that marks, for observations given as arrays of (tenant,
// equipment, ts), the UTC days from each ts up to the equipment's next state
// observation (or now, $4), at most MaxCarryDays.
var markForward = markForwardOf("state_observation")
var markForwardProducts = markForwardOf("product_observation")

// markForwardOf is markForward for the observations of table, each holding until the
// next one of its equipment.
func markForwardOf(table string) string {
	return strings.Replace(markForwardSQL, "state_observation", table, 1)
}

var markForwardSQL = `
INSERT INTO oee_dirty (tenant_id, equipment, day)
SELECT DISTINCT o.t, o.e, d::date
FROM unnest($1::text[], $2::text[], $3::timestamptz[]) AS o(t, e, ts)
CROSS JOIN LATERAL (SELECT least(coalesce(
        (SELECT min(s.ts) FROM state_observation s WHERE s.tenant_id = o.t AND s.equipment = o.e AND s.ts > o.ts),
        $4::timestamptz), $4::timestamptz, o.ts + interval '` + strconv.Itoa(MaxCarryDays) + ` days') AS until) n
CROSS JOIN LATERAL generate_series(date_trunc('day', o.ts AT TIME ZONE 'UTC'),
        greatest(date_trunc('day', o.ts AT TIME ZONE 'UTC'), date_trunc('day', n.until AT TIME ZONE 'UTC')),
        interval '1 day') AS d
ON CONFLICT (tenant_id, equipment, day) DO UPDATE SET marked_at = now(), attempts = 0, not_before = '-infinity'`

// Save stores the state and counter samples of envs and marks their days dirty. A
// bad-quality state sample is an UNKNOWN observation: knowledge of the machine ends
// there until the next good one.
func (s *Store) Save(ctx context.Context, envs []*schemas.Envelope) (states, readings int, err error) {
	var (
		sTenant, sEq       []string
		sTS                []time.Time
		sCat               []int16
		sReason            []int64
		sCode              []*float64
		rTenant, rEq, rTag []string
		rKind              []int16
		rTS                []time.Time
		rVal, rWrap        []float64
		pTenant, pEq, pPr  []string
		pTS                []time.Time
	)
	for _, env := range envs {
		for i := range env.Samples {
			smp := &env.Samples[i]
			switch smp.Role {
			case schemas.RoleState:
				var code *float64
				if smp.Kind == schemas.NumberValue {
					v := smp.Value
					code = &v
				}
				cat := smp.State
				if smp.Quality == schemas.QualityBad {
					cat = schemas.StateUnknown // a failed read says nothing about the machine
				}
				sTenant, sEq, sTS = append(sTenant, env.Tenant), append(sEq, env.Equipment), append(sTS, smp.TS)
				sCat, sReason, sCode = append(sCat, int16(cat)), append(sReason, int64(smp.Reason)), append(sCode, code)
			case schemas.RoleCounter:
				if smp.Kind != schemas.NumberValue || smp.Quality == schemas.QualityBad {
					continue
				}
				rTenant, rEq, rTag = append(rTenant, env.Tenant), append(rEq, env.Equipment), append(rTag, smp.Tag)
				rKind, rTS = append(rKind, int16(smp.Counter)), append(rTS, smp.TS)
				rVal, rWrap = append(rVal, smp.Value), append(rWrap, float64(smp.Wrap))
			case schemas.RoleProduct:
				if smp.Quality == schemas.QualityBad {
					continue // a failed read does not say the product changed
				}
				pTenant, pEq, pTS, pPr = append(pTenant, env.Tenant), append(pEq, env.Equipment), append(pTS, smp.TS), append(pPr, smp.Text)
			}
		}
	}
	if len(sTS)+len(rTS)+len(pTS) == 0 {
		return 0, 0, nil
	}
	err = pgx.BeginFunc(ctx, s.Pool, func(tx pgx.Tx) error {
		b := &pgx.Batch{}
		b.Queue(`INSERT INTO state_observation (tenant_id, equipment, ts, category, reason_code, plc_code)
			SELECT * FROM unnest($1::text[], $2::text[], $3::timestamptz[], $4::smallint[], $5::bigint[], $6::float8[])
			ON CONFLICT DO NOTHING`, sTenant, sEq, sTS, sCat, sReason, sCode)
		b.Queue(`INSERT INTO counter_reading (tenant_id, equipment, tag, kind, ts, value, wrap)
			SELECT * FROM unnest($1::text[], $2::text[], $3::text[], $4::smallint[], $5::timestamptz[], $6::float8[], $7::float8[])
			ON CONFLICT DO NOTHING`, rTenant, rEq, rTag, rKind, rTS, rVal, rWrap)
		b.Queue(markForward, sTenant, sEq, sTS, s.now())
		b.Queue(`INSERT INTO product_observation (tenant_id, equipment, ts, product)
			SELECT * FROM unnest($1::text[], $2::text[], $3::timestamptz[], $4::text[]) ON CONFLICT DO NOTHING`, pTenant, pEq, pTS, pPr)
		b.Queue(markForwardProducts, pTenant, pEq, pTS, s.now())
		// A reading's increment lands on its day, and a late reading changes the
		// increment of the next reading of the same counter.
		b.Queue(`INSERT INTO oee_dirty (tenant_id, equipment, day)
			SELECT DISTINCT o.t, o.e, d.ts::date FROM unnest($1::text[], $2::text[], $3::text[], $4::timestamptz[]) AS o(t, e, tag, ts)
			CROSS JOIN LATERAL (SELECT o.ts AT TIME ZONE 'UTC' AS ts UNION ALL
				(SELECT c.ts AT TIME ZONE 'UTC' FROM counter_reading c WHERE c.tenant_id = o.t AND c.equipment = o.e AND c.tag = o.tag AND c.ts > o.ts
				 ORDER BY c.ts LIMIT 1)) AS d
			ON CONFLICT (tenant_id, equipment, day) DO UPDATE SET marked_at = now(), attempts = 0, not_before = '-infinity'`,
			rTenant, rEq, rTag, rTS)
		return tx.SendBatch(ctx, b).Close()
	})
	return len(sTS), len(rTS), err
}

// AgentStatus records an agent's birth or death for the equipment it serves.
//
//   - Going offline ends knowledge of those machines at st.Since() (an UNKNOWN
//     observation carrying the agent's incarnation).
//   - Coming back online with the same incarnation means the agent process lived on
//     through a network outage and its disk buffer carries what it saw: the offline
//     marks of that incarnation are withdrawn.
//   - A birth naming a previous run (the agent restarted: a crash, a power loss, an
//     update) ends knowledge where that run got (Previous.Until, by the sources'
//     clock), until this run's first readings.
func (s *Store) AgentStatus(ctx context.Context, st *schemas.AgentStatus) error {
	if len(st.Equipment) == 0 || st.Tenant == "" {
		return nil
	}
	return pgx.BeginFunc(ctx, s.Pool, func(tx pgx.Tx) error {
		var ts0 []time.Time
		var eqs []string
		offline := func(ts time.Time, incarnation string) error {
			var inc *string
			if incarnation != "" {
				inc = &incarnation
			}
			for _, e := range st.Equipment {
				if _, err := tx.Exec(ctx, `INSERT INTO state_observation (tenant_id, equipment, ts, category, offline_incarnation)
					VALUES ($1, $2, $3, 0, $4) ON CONFLICT DO NOTHING`, st.Tenant, e, ts, inc); err != nil {
					return err
				}
				eqs, ts0 = append(eqs, e), append(ts0, ts)
			}
			return nil
		}
		switch {
		case st.State == schemas.AgentOffline:
			if err := offline(st.Since(), st.Incarnation); err != nil {
				return err
			}
		case st.Incarnation != "":
			rows, err := tx.Query(ctx, `DELETE FROM state_observation WHERE tenant_id = $1 AND equipment = ANY($2)
				AND offline_incarnation = $3 RETURNING equipment, ts`, st.Tenant, st.Equipment, st.Incarnation)
			if err != nil {
				return err
			}
			for rows.Next() {
				var e string
				var t time.Time
				if err := rows.Scan(&e, &t); err != nil {
					return err
				}
				eqs, ts0 = append(eqs, e), append(ts0, t)
			}
			if err := rows.Err(); err != nil {
				return err
			}
			if p := st.Previous; p != nil && p.Incarnation != st.Incarnation && !p.Until.IsZero() {
				if err := offline(p.Until, p.Incarnation); err != nil {
					return err
				}
			}
		}
		if len(eqs) == 0 {
			return nil
		}
		tenants := make([]string, len(eqs))
		for i := range tenants {
			tenants[i] = st.Tenant
		}
		_, err := tx.Exec(ctx, markForward, tenants, eqs, ts0, s.now())
		return err
	})
}

// Failure is a day set aside because computing it failed.
type Failure struct {
	Day
	Attempts  int
	LastError string
	NextTry   time.Time
}

// RecomputeNext claims the oldest dirty equipment-day due, computes and writes its
// windows and removes the mark. It reports the day it claimed (found false when none
// was due). When computing fails, the day stays marked, set aside with its error and
// retried after a backoff that grows with every failure (1 s to 1 h, jittered).
func (s *Store) RecomputeNext(ctx context.Context, now time.Time) (d Day, found bool, err error) {
	err = pgx.BeginFunc(ctx, s.Pool, func(tx pgx.Tx) error {
		err := tx.QueryRow(ctx, `SELECT tenant_id, equipment, day FROM oee_dirty WHERE not_before <= now()
			ORDER BY marked_at LIMIT 1 FOR UPDATE SKIP LOCKED`).Scan(&d.Tenant, &d.Equipment, &d.Day)
		if errors.Is(err, pgx.ErrNoRows) {
			return nil
		}
		if err != nil {
			return err
		}
		found = true
		if err := s.compute(ctx, tx, d, now); err != nil {
			return err
		}
		_, err = tx.Exec(ctx, `DELETE FROM oee_dirty WHERE tenant_id = $1 AND equipment = $2 AND day = $3`, d.Tenant, d.Equipment, d.Day)
		return err
	})
	if err != nil && found && ctx.Err() == nil {
		if serr := s.setAside(ctx, d, err); serr != nil {
			return d, found, errors.Join(err, serr)
		}
	}
	return d, found, err
}

func (s *Store) setAside(ctx context.Context, d Day, cause error) error {
	var attempts int
	err := s.Pool.QueryRow(ctx, `SELECT attempts FROM oee_dirty WHERE tenant_id = $1 AND equipment = $2 AND day = $3`,
		d.Tenant, d.Equipment, d.Day).Scan(&attempts)
	if errors.Is(err, pgx.ErrNoRows) {
		return nil
	}
	if err != nil {
		return err
	}
	backoff := servicekit.BackoffAfter(attempts+1, time.Second, time.Hour)
	msg := cause.Error()
	if len(msg) > 2000 {
		msg = msg[:2000]
	}
	_, err = s.Pool.Exec(ctx, `UPDATE oee_dirty SET attempts = attempts + 1, last_error = $4, not_before = now() + $5::interval
		WHERE tenant_id = $1 AND equipment = $2 AND day = $3`, d.Tenant, d.Equipment, d.Day, msg, backoff)
	return err
}

// Failures lists the days set aside, oldest first (as the owner: every tenant; in a
// tenant's transaction: that tenant's).
func Failures(ctx context.Context, q Querier, limit int) ([]Failure, error) {
	rows, err := q.Query(ctx, `SELECT tenant_id, equipment, day, attempts, coalesce(last_error, ''), greatest(not_before, marked_at)
		FROM oee_dirty WHERE attempts > 0 ORDER BY marked_at LIMIT $1`, limit)
	if err != nil {
		return nil, err
	}
	return pgx.CollectRows(rows, func(r pgx.CollectableRow) (Failure, error) {
		var f Failure
		err := r.Scan(&f.Tenant, &f.Equipment, &f.Day.Day, &f.Attempts, &f.LastError, &f.NextTry)
		return f, err
	})
}

// Compute computes and writes the windows of one equipment-day now, whether or not
// it is marked (the recompute command), and removes its mark.
func (s *Store) Compute(ctx context.Context, d Day, now time.Time) error {
	return pgx.BeginFunc(ctx, s.Pool, func(tx pgx.Tx) error {
		if err := s.compute(ctx, tx, d, now); err != nil {
			return err
		}
		_, err := tx.Exec(ctx, `DELETE FROM oee_dirty WHERE tenant_id = $1 AND equipment = $2 AND day = $3`, d.Tenant, d.Equipment, d.Day)
		return err
	})
}

func (s *Store) compute(ctx context.Context, tx pgx.Tx, d Day, now time.Time) error {
	var known bool
	if err := tx.QueryRow(ctx, `SELECT EXISTS (SELECT 1 FROM tenant WHERE tenant_id = $1)`, d.Tenant).Scan(&known); err != nil {
		return err
	}
	if !known {
		if s.OnUnknownTenant != nil {
			s.OnUnknownTenant()
		}
		return nil
	}
	cfg, maxAge, eqID, err := equipment(ctx, tx, d.Tenant, d.Equipment)
	if err != nil {
		return fmt.Errorf("equipment %s/%s: %w", d.Tenant, d.Equipment, err)
	}
	// The local days that the UTC day overlaps.
	day := d.Day.UTC().Truncate(24 * time.Hour)
	first := windows.DaySpan(day, cfg.Location)
	last := windows.DaySpan(day.Add(24*time.Hour-time.Nanosecond), cfg.Location)
	from, to := first.Start.Add(-24*time.Hour), last.End.Add(24*time.Hour) // shifts may start the day before
	until := now
	if to.Before(until) {
		until = to
	}
	states, err := intervals(ctx, tx, d.Tenant, d.Equipment, from, to, maxAge, until)
	if err != nil {
		return err
	}
	counts, err := counts(ctx, tx, d.Tenant, d.Equipment, from, to)
	if err != nil {
		return err
	}
	if eqID != 0 {
		if cfg.Runs, err = runs(ctx, tx, eqID, from, to, now); err != nil {
			return err
		}
	}
	if len(cfg.Runs) == 0 { // no run entered: the products the line itself named
		if cfg.Runs, err = productRuns(ctx, tx, d.Tenant, d.Equipment, from, to, until, cfg.IdealCycle); err != nil {
			return err
		}
	}
	var ws []windows.Window
	for t := first.Start; t.Before(last.End) && t.Before(now); t = windows.DaySpan(t, cfg.Location).End {
		ws = append(ws, windows.Day(cfg, t, now, states, counts)...) // days not begun yet have no windows
	}
	if err := write(ctx, tx, d.Tenant, d.Equipment, ws, now); err != nil {
		return err
	}
	if s.OnAnomaly != nil {
		seen := map[string]bool{}
		for _, w := range ws {
			for _, a := range anomalies(w.Result) {
				if !seen[a] {
					seen[a] = true
					s.OnAnomaly(a)
				}
			}
		}
	}
	if eqID == 0 {
		return nil
	}
	return writeDowntime(ctx, tx, d.Tenant, eqID, oee.Span{Start: first.Start, End: last.End}, until, states)
}

// equipment loads what the windows of one equipment depend on besides its data, its
// opt-in state staleness limit (0: none) and its id (0: not registered).
func equipment(ctx context.Context, q Querier, tenant, code string) (windows.Equipment, time.Duration, int64, error) {
	eq := windows.Equipment{Location: time.UTC, MicroStopThreshold: 2 * time.Minute}
	var id, siteID int64
	var ict, maxAge *float64
	var micro float64
	var tz string
	err := q.QueryRow(ctx, `SELECT e.id, e.ideal_cycle_time_s, e.micro_stop_threshold_s, e.state_max_age_s, s.id, s.time_zone
		FROM equipment e JOIN work_center w ON w.id = e.work_center_id JOIN line l ON l.id = w.line_id
		JOIN area a ON a.id = l.area_id JOIN site s ON s.id = a.site_id
		WHERE e.tenant_id = $1 AND e.code = $2`, tenant, code).Scan(&id, &ict, &micro, &maxAge, &siteID, &tz)
	if errors.Is(err, pgx.ErrNoRows) {
		return eq, 0, 0, nil // not registered: UTC, around the clock, no ideal cycle time (no performance)
	}
	if err != nil {
		return eq, 0, 0, err
	}
	loc, err := time.LoadLocation(tz)
	if err != nil {
		return eq, 0, 0, fmt.Errorf("site time zone %q: %w", tz, err)
	}
	eq.Location = loc
	if ict != nil {
		eq.IdealCycle = seconds(*ict)
	}
	eq.MicroStopThreshold = seconds(micro)
	var age time.Duration
	if maxAge != nil {
		age = seconds(*maxAge)
	}
	rows, err := q.Query(ctx, `SELECT p.id, p.name, extract(epoch FROM p.starts_at)::float8, extract(epoch FROM p.duration)::float8,
		p.weekdays, p.valid_from, p.valid_to FROM shift_pattern p WHERE p.site_id = $1`, siteID)
	if err != nil {
		return eq, 0, 0, err
	}
	ids := map[int64]int{}
	for rows.Next() {
		var pid int64
		var sh windows.Shift
		var start, dur float64
		var days []int16
		var validTo *time.Time
		if err := rows.Scan(&pid, &sh.Name, &start, &dur, &days, &sh.ValidFrom, &validTo); err != nil {
			rows.Close()
			return eq, 0, 0, err
		}
		if validTo != nil {
			sh.ValidTo = *validTo
		}
		sh.StartsAt, sh.Duration = seconds(start), seconds(dur)
		for _, d := range days {
			sh.Weekdays = append(sh.Weekdays, time.Weekday(d%7)) // ISO 7 = Sunday = 0
		}
		ids[pid] = len(eq.Shifts)
		eq.Shifts = append(eq.Shifts, sh)
	}
	rows.Close()
	if err := rows.Err(); err != nil {
		return eq, 0, 0, err
	}
	rows, err = q.Query(ctx, `SELECT b.shift_pattern_id, extract(epoch FROM b.start_offset)::float8, extract(epoch FROM b.duration)::float8
		FROM planned_break b JOIN shift_pattern p ON p.id = b.shift_pattern_id WHERE p.site_id = $1`, siteID)
	if err != nil {
		return eq, 0, 0, err
	}
	for rows.Next() {
		var pid int64
		var off, dur float64
		if err := rows.Scan(&pid, &off, &dur); err != nil {
			rows.Close()
			return eq, 0, 0, err
		}
		if k, ok := ids[pid]; ok {
			eq.Shifts[k].Breaks = append(eq.Shifts[k].Breaks, windows.Break{Offset: seconds(off), Duration: seconds(dur)})
		}
	}
	rows.Close()
	if err := rows.Err(); err != nil {
		return eq, 0, 0, err
	}
	rows, err = q.Query(ctx, `SELECT starts_at, ends_at FROM planned_stop WHERE equipment_id = $1`, id)
	if err != nil {
		return eq, 0, 0, err
	}
	for rows.Next() {
		var sp oee.Span
		if err := rows.Scan(&sp.Start, &sp.End); err != nil {
			rows.Close()
			return eq, 0, 0, err
		}
		eq.PlannedStops = append(eq.PlannedStops, sp)
	}
	rows.Close()
	return eq, age, id, rows.Err()
}

func seconds(s float64) time.Duration { return time.Duration(s * float64(time.Second)) }

// intervals returns the equipment's state intervals over [from, to), with the state
// carried in from before from (however long ago: states hold until the next one).
func intervals(ctx context.Context, q Querier, tenant, eq string, from, to time.Time, maxAge time.Duration, until time.Time) ([]oee.StateInterval, error) {
	rows, err := q.Query(ctx, `
		(SELECT ts, category, reason_code FROM state_observation
		 WHERE tenant_id = $1 AND equipment = $2 AND ts < $3 ORDER BY ts DESC LIMIT 1)
		UNION ALL
		SELECT ts, category, reason_code FROM state_observation
		WHERE tenant_id = $1 AND equipment = $2 AND ts >= $3 AND ts < $4`,
		tenant, eq, from, to)
	if err != nil {
		return nil, err
	}
	obs, err := pgx.CollectRows(rows, func(row pgx.CollectableRow) (oee.Observation, error) {
		var o oee.Observation
		var cat int16
		var reason int64
		err := row.Scan(&o.TS, &cat, &reason)
		o.State, o.Reason = schemas.StateCategory(cat), uint32(reason)
		return o, err
	})
	if err != nil {
		return nil, err
	}
	return oee.Intervals(obs, maxAge, until), nil
}

// Intervals returns the state intervals of one equipment clipped to [from, to), as
// the windows are computed from them (now ends the last one).
func Intervals(ctx context.Context, q Querier, tenant, eq string, from, to, now time.Time) ([]oee.StateInterval, error) {
	// Only the opt-in staleness limit matters here, not the whole calendar.
	var age *float64
	err := q.QueryRow(ctx, `SELECT state_max_age_s FROM equipment WHERE tenant_id = $1 AND code = $2`, tenant, eq).Scan(&age)
	if err != nil && !errors.Is(err, pgx.ErrNoRows) {
		return nil, err
	}
	var maxAge time.Duration
	if age != nil {
		maxAge = seconds(*age)
	}
	until := now
	if to.Before(until) {
		until = to
	}
	ivs, err := intervals(ctx, q, tenant, eq, from, to, maxAge, until)
	if err != nil {
		return nil, err
	}
	out := ivs[:0]
	for _, iv := range ivs {
		if iv.Start.Before(from) {
			iv.Start = from
		}
		if iv.End.After(to) {
			iv.End = to
		}
		if iv.End.After(iv.Start) {
			out = append(out, iv)
		}
	}
	return out, nil
}

// counts returns the increments over [from, to), each counter anchored by its last
// reading before from.
func counts(ctx context.Context, q Querier, tenant, eq string, from, to time.Time) ([]oee.Count, error) {
	rows, err := q.Query(ctx, `
		SELECT tag, kind, ts, value, wrap FROM (
			SELECT DISTINCT ON (tag) tag, kind, ts, value, wrap FROM counter_reading
			WHERE tenant_id = $1 AND equipment = $2 AND ts < $3 ORDER BY tag, ts DESC) AS anchor
		UNION ALL
		SELECT tag, kind, ts, value, wrap FROM counter_reading
		WHERE tenant_id = $1 AND equipment = $2 AND ts >= $3 AND ts < $4`, tenant, eq, from, to)
	if err != nil {
		return nil, err
	}
	rs, err := pgx.CollectRows(rows, func(row pgx.CollectableRow) (windows.Reading, error) {
		var r windows.Reading
		var kind int16
		var v, w float64
		err := row.Scan(&r.Tag, &kind, &r.TS, &v, &w)
		r.Kind, r.Value, r.Wrap = schemas.CounterKind(kind), uint64(v), uint64(w)
		return r, err
	})
	if err != nil {
		return nil, err
	}
	return windows.Counts(rs), nil
}

// anomalies names what is wrong with a window's data.
func anomalies(r oee.Result) []string {
	out := []string{}
	if r.GoodAboveTotal {
		out = append(out, AnomalyGoodAboveTotal)
	}
	if r.PerformanceAbove100 {
		out = append(out, AnomalyPerformanceAbove100)
	}
	return out
}

// Anomalies a window may carry.
const (
	AnomalyGoodAboveTotal      = "good_above_total"      // the good counter counted more than the total counter
	AnomalyPerformanceAbove100 = "performance_above_100" // more parts than the ideal cycle time allows: it is wrong
)

func write(ctx context.Context, tx pgx.Tx, tenant, eq string, ws []windows.Window, now time.Time) error {
	b := &pgx.Batch{}
	for _, w := range ws {
		b.Queue(`INSERT INTO oee_window (tenant_id, equipment, granularity, starts_at, ends_at, planned_s, run_s, setup_s,
			breakdown_s, micro_stop_s, idle_s, planned_down_s, not_scheduled_s, unknown_s, ideal_run_s, total_count,
			good_count, scrap_count, availability, performance, quality, oee, scheduled_s, coverage, anomalies, computed_through, computed_at)
			VALUES ($1,$2,$3,$4,$5,$6,$7,$8,$9,$10,$11,$12,$13,$14,$15,$16,$17,$18,$19,$20,$21,$22,$23,$24,$25,$26, now())
			ON CONFLICT (tenant_id, equipment, granularity, starts_at) DO UPDATE SET
			ends_at = EXCLUDED.ends_at, planned_s = EXCLUDED.planned_s, run_s = EXCLUDED.run_s, setup_s = EXCLUDED.setup_s,
			breakdown_s = EXCLUDED.breakdown_s, micro_stop_s = EXCLUDED.micro_stop_s, idle_s = EXCLUDED.idle_s,
			planned_down_s = EXCLUDED.planned_down_s, not_scheduled_s = EXCLUDED.not_scheduled_s, unknown_s = EXCLUDED.unknown_s,
			ideal_run_s = EXCLUDED.ideal_run_s, total_count = EXCLUDED.total_count, good_count = EXCLUDED.good_count,
			scrap_count = EXCLUDED.scrap_count, availability = EXCLUDED.availability, performance = EXCLUDED.performance,
			quality = EXCLUDED.quality, oee = EXCLUDED.oee, scheduled_s = EXCLUDED.scheduled_s, coverage = EXCLUDED.coverage,
			anomalies = EXCLUDED.anomalies, computed_through = EXCLUDED.computed_through, computed_at = now()`,
			tenant, eq, w.Granularity, w.Start, w.End, w.PlannedS, w.RunS, w.SetupS, w.BreakdownS, w.MicroStopS, w.IdleS,
			w.PlannedDownS, w.NotScheduledS, w.UnknownS, w.IdealRunS, w.TotalCount, w.GoodCount, w.ScrapCount,
			w.Availability, w.Performance, w.Quality, w.OEE, w.ScheduledS, w.Coverage, anomalies(w.Result), now)
	}
	return tx.SendBatch(ctx, b).Close()
}

// windowsSQL sums, per start, the windows of one tenant ($1), granularity ($2) and
// start in [$3, $4) of the equipment in the array %s, ordered by start: one row per
// bucket however many equipment a line or site has, each a result as oee.Sum of the
// bucket's windows would make it (finish aside). A window has an ideal cycle when it
// has a performance or did not run.
const windowsSQL = `SELECT starts_at, max(ends_at), sum(planned_s), sum(run_s), sum(setup_s), sum(breakdown_s),
	sum(micro_stop_s), sum(idle_s), sum(planned_down_s), sum(not_scheduled_s), sum(unknown_s), sum(ideal_run_s),
	sum(total_count)::bigint, sum(good_count)::bigint, sum(scrap_count)::bigint,
	bool_and(performance IS NOT NULL OR run_s <= 0), sum(scheduled_s), bool_or('` + AnomalyGoodAboveTotal + `' = ANY(anomalies))
	FROM oee_window WHERE tenant_id = $1 AND equipment = ANY(%s) AND granularity = $2 AND starts_at >= $3 AND starts_at < $4
	GROUP BY starts_at ORDER BY starts_at`

// QueueWindows queues on b the query of the stored windows of one granularity
// starting in [from, to) of the equipment that equipmentSQL selects (one column of
// codes; its parameters are args, numbered from $5), so that the lookup of a line's
// or site's equipment and of their windows take one round trip. When b's results
// are read, *into is set to one result per start (the sum of that bucket's
// windows), ordered by start: oee.Sum of one gives the bucket's figures, of all the
// range's.
func QueueWindows(b *pgx.Batch, into *[]oee.Result, tenant, granularity string, from, to time.Time, equipmentSQL string, args ...any) {
	b.Queue(fmt.Sprintf(windowsSQL, "ARRAY("+equipmentSQL+")"), append([]any{tenant, granularity, from, to}, args...)...).
		Query(func(rows pgx.Rows) error {
			all, err := pgx.CollectRows(rows, scanWindow)
			*into = all
			return err
		})
}

func scanWindow(row pgx.CollectableRow) (oee.Result, error) {
	var o oee.Result
	err := row.Scan(&o.Start, &o.End, &o.PlannedS, &o.RunS, &o.SetupS, &o.BreakdownS, &o.MicroStopS, &o.IdleS,
		&o.PlannedDownS, &o.NotScheduledS, &o.UnknownS, &o.IdealRunS, &o.TotalCount, &o.GoodCount, &o.ScrapCount,
		&o.HasIdealCycle, &o.ScheduledS, &o.GoodAboveTotal)
	o.CalendarS = o.ScheduledS + o.NotScheduledS
	return o, err
}

// Scope selects equipment for marking and recomputing: every field set narrows it.
type Scope struct {
	Tenant    string
	Site      string // site code
	Line      string // line code (within Site when both are set)
	Equipment string // equipment code
}

// scopeSQL selects (tenant_id, code) of the equipment in a scope; $1..$4 are its
// fields, empty meaning any.
const scopeSQL = `SELECT e.tenant_id, e.code FROM equipment e
	JOIN work_center w ON w.id = e.work_center_id JOIN line l ON l.id = w.line_id
	JOIN area a ON a.id = l.area_id JOIN site s ON s.id = a.site_id
	WHERE ($1 = '' OR e.tenant_id = $1) AND ($2 = '' OR s.code = $2) AND ($3 = '' OR l.code = $3) AND ($4 = '' OR e.code = $4)`

// MarkChanged marks for recomputation the days of the equipment in scope that have
// windows overlapping [from, to) (zero times: unbounded), because something their
// OEE depends on changed (ideal cycle time, calendar, planned stops, time zone). It
// returns how many equipment-days were marked. In the API's transaction it marks
// only the tenant's own.
func MarkChanged(ctx context.Context, q Querier, sc Scope, from, to time.Time) (int64, error) {
	if from.IsZero() {
		from = time.Unix(0, 0)
	}
	if to.IsZero() {
		to = time.Date(9999, 1, 1, 0, 0, 0, 0, time.UTC)
	}
	tag, err := q.Exec(ctx, `INSERT INTO oee_dirty (tenant_id, equipment, day)
		SELECT DISTINCT w.tenant_id, w.equipment, d.day FROM oee_window w
		JOIN (`+scopeSQL+`) e (tenant_id, code) ON e.tenant_id = w.tenant_id AND e.code = w.equipment
		CROSS JOIN LATERAL (VALUES ((w.starts_at AT TIME ZONE 'UTC')::date), (((w.ends_at - interval '1 microsecond') AT TIME ZONE 'UTC')::date)) AS d (day)
		WHERE w.granularity = 'day' AND w.starts_at < $6 AND w.ends_at > $5
		ON CONFLICT (tenant_id, equipment, day) DO UPDATE SET marked_at = now(), attempts = 0, not_before = '-infinity'`,
		sc.Tenant, sc.Site, sc.Line, sc.Equipment, from, to)
	return tag.RowsAffected(), err
}

// RefreshOpen marks the days whose windows are still open (computed before their
// end) so that time passing is counted although no new data came: a machine that
// runs for hours reports one RUNNING. A finished day is marked once more to close
// it, and the current day of the same equipment is marked when its state is known
// (the last observation is not UNKNOWN), so the state carries over midnight.
func (s *Store) RefreshOpen(ctx context.Context) (int64, error) {
	tag, err := s.Pool.Exec(ctx, `INSERT INTO oee_dirty (tenant_id, equipment, day)
		SELECT DISTINCT w.tenant_id, w.equipment, d.day FROM oee_window w
		CROSS JOIN LATERAL (VALUES
			(((least(w.ends_at, $1) - interval '1 microsecond') AT TIME ZONE 'UTC')::date),
			(CASE WHEN w.ends_at <= $1 AND coalesce((SELECT s.category FROM state_observation s
				WHERE s.tenant_id = w.tenant_id AND s.equipment = w.equipment AND s.ts <= $1 ORDER BY s.ts DESC LIMIT 1), 0) <> 0
			 THEN ($1 AT TIME ZONE 'UTC')::date END)) AS d (day)
		WHERE w.granularity = 'day' AND w.computed_through < w.ends_at AND w.ends_at > $1 - interval '3 days' AND d.day IS NOT NULL
		ON CONFLICT (tenant_id, equipment, day) DO NOTHING`, s.now())
	return tag.RowsAffected(), err
}

// Days lists the equipment-days in scope over the UTC days [from, to], for the
// recompute command: every day of every equipment in scope that has observations,
// readings or windows on it.
func Days(ctx context.Context, q Querier, sc Scope, from, to time.Time) ([]Day, error) {
	rows, err := q.Query(ctx, `WITH e AS (`+scopeSQL+`)
		SELECT e.tenant_id, e.code, d::date FROM e CROSS JOIN generate_series($5::date, $6::date, interval '1 day') AS d
		WHERE EXISTS (SELECT 1 FROM state_observation s WHERE s.tenant_id = e.tenant_id AND s.equipment = e.code AND s.ts < d + interval '1 day')
		   OR EXISTS (SELECT 1 FROM counter_reading c WHERE c.tenant_id = e.tenant_id AND c.equipment = e.code AND c.ts >= d AND c.ts < d + interval '1 day')
		ORDER BY 1, 2, 3`, sc.Tenant, sc.Site, sc.Line, sc.Equipment, from, to)
	if err != nil {
		return nil, err
	}
	return pgx.CollectRows(rows, func(r pgx.CollectableRow) (Day, error) {
		var d Day
		err := r.Scan(&d.Tenant, &d.Equipment, &d.Day)
		return d, err
	})
}

// IsDataError reports whether err is PostgreSQL refusing the data itself (a value it
// cannot store, a broken constraint): retrying the same data fails the same way.
func IsDataError(err error) bool {
	var pe *pgconn.PgError
	if !errors.As(err, &pe) {
		return false
	}
	switch pe.Code[:2] {
	case "22", "23": // data exception, integrity constraint violation
		return true
	}
	return false
}

// CountBucket is the part counts of one window.
type CountBucket struct {
	Start      time.Time `json:"start"`
	End        time.Time `json:"end"`
	TotalCount int64     `json:"total_count"`
	GoodCount  int64     `json:"good_count"`
	ScrapCount int64     `json:"scrap_count"`
}

// Counts returns one equipment's part counts per window of one granularity starting
// in [from, to).
func Counts(ctx context.Context, q Querier, tenant, equipment, granularity string, from, to time.Time) ([]CountBucket, error) {
	rows, err := q.Query(ctx, `SELECT starts_at, ends_at, total_count, good_count, scrap_count FROM oee_window
		WHERE tenant_id = $1 AND equipment = $2 AND granularity = $3 AND starts_at >= $4 AND starts_at < $5 ORDER BY starts_at`,
		tenant, equipment, granularity, from, to)
	if err != nil {
		return nil, err
	}
	return pgx.CollectRows(rows, pgx.RowToStructByPos[CountBucket])
}

// Backlog is the state of the recomputation queue.
type Backlog struct {
	Dirty, SetAside int64         // equipment-days waiting, and those of them set aside after a failure
	Oldest          time.Duration // age of the oldest mark
}

// QueueBacklog reads the recomputation queue's state.
func QueueBacklog(ctx context.Context, q Querier) (Backlog, error) {
	var b Backlog
	var oldest float64
	err := q.QueryRow(ctx, `SELECT count(*), count(*) FILTER (WHERE attempts > 0),
		coalesce(extract(epoch FROM now() - min(marked_at)), 0)::float8 FROM oee_dirty`).Scan(&b.Dirty, &b.SetAside, &oldest)
	b.Oldest = seconds(oldest)
	return b, err
}
