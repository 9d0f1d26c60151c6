// Package store is the aggregator's PostgreSQL side: it saves state and counter
// observations from the events topic (idempotently, any order) with the equipment-days
// they make dirty, and it recomputes dirty days into oee_window.
//
// Contract: Save writes observations and dirty marks in one transaction; Recompute
// claims one dirty equipment-day (FOR UPDATE SKIP LOCKED, so several aggregators
// share the work), computes its windows from everything stored, upserts them and
// removes the mark in one transaction. A crash in between leaves the mark: the day is
// computed again. Replaying the topic gives the same observations, so the same table.
package store

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"
	"github.com/prometheus/client_golang/prometheus"

	"takt.dev/plant/windows"
	"takt.dev/plant/oee"
	"takt.dev/schemas"
)

// Store reads and writes the aggregator's tables, as their owner.
type Store struct {
	Pool   *pgxpool.Pool
	MaxGap time.Duration // how long a state observation holds without a newer one

	// UnknownTenantDays counts dirty days dropped because their tenant is not
	// registered (nothing could read their windows); nil counts nothing.
	UnknownTenantDays prometheus.Counter
}

// Save stores the state and counter samples of envs and marks their days dirty.
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
		dTenant, dEq       []string
		dDay               []time.Time
	)
	type key struct {
		t, e string
		d    time.Time
	}
	dirty := map[key]bool{}
	mark := func(t, e string, ts time.Time) {
		for _, x := range []time.Time{ts, ts.Add(s.MaxGap)} { // a state spills into the next day
			d := x.UTC().Truncate(24 * time.Hour)
			if k := (key{t, e, d}); !dirty[k] {
				dirty[k] = true
				dTenant, dEq, dDay = append(dTenant, t), append(dEq, e), append(dDay, d)
			}
		}
	}
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
			default:
				continue
			}
			mark(env.Tenant, env.Equipment, smp.TS)
		}
	}
	if len(dTenant) == 0 {
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
		b.Queue(`INSERT INTO oee_dirty (tenant_id, equipment, day)
			SELECT * FROM unnest($1::text[], $2::text[], $3::date[])
			ON CONFLICT (tenant_id, equipment, day) DO UPDATE SET marked_at = now()`, dTenant, dEq, dDay)
		return tx.SendBatch(ctx, b).Close()
	})
	return len(sTS), len(rTS), err
}

// Recompute claims one dirty equipment-day, computes and writes its windows, and
// reports whether there was one.
func (s *Store) Recompute(ctx context.Context, now time.Time) (bool, error) {
	found := false
	err := pgx.BeginFunc(ctx, s.Pool, func(tx pgx.Tx) error {
		var tenant, eq string
		var day time.Time
		err := tx.QueryRow(ctx, `DELETE FROM oee_dirty WHERE (tenant_id, equipment, day) IN (
			SELECT tenant_id, equipment, day FROM oee_dirty ORDER BY marked_at LIMIT 1 FOR UPDATE SKIP LOCKED)
			RETURNING tenant_id, equipment, day`).Scan(&tenant, &eq, &day)
		if errors.Is(err, pgx.ErrNoRows) {
			return nil
		}
		if err != nil {
			return err
		}
		found = true
		var known bool
		if err := tx.QueryRow(ctx, `SELECT EXISTS (SELECT 1 FROM tenant WHERE tenant_id = $1)`, tenant).Scan(&known); err != nil {
			return err
		}
		if !known {
			if s.UnknownTenantDays != nil { // the observations stay for when it is registered
				s.UnknownTenantDays.Inc()
			}
			return nil
		}
		cfg, err := s.equipment(ctx, tx, tenant, eq)
		if err != nil {
			return fmt.Errorf("equipment %s/%s: %w", tenant, eq, err)
		}
		// The local days that the UTC day overlaps.
		first := windows.DaySpan(day, cfg.Location)
		last := windows.DaySpan(day.Add(24*time.Hour-time.Nanosecond), cfg.Location)
		from, to := first.Start.Add(-24*time.Hour), last.End.Add(24*time.Hour) // shifts may start the day before
		states, err := s.states(ctx, tx, tenant, eq, from, to)
		if err != nil {
			return err
		}
		counts, err := s.counts(ctx, tx, tenant, eq, from, to)
		if err != nil {
			return err
		}
		var ws []windows.Window
		for d := first.Start; d.Before(last.End); d = windows.DaySpan(d, cfg.Location).End {
			ws = append(ws, windows.Day(cfg, d, now, states, counts)...)
		}
		return s.write(ctx, tx, tenant, eq, ws)
	})
	return found, err
}

func (s *Store) equipment(ctx context.Context, tx pgx.Tx, tenant, code string) (windows.Equipment, error) {
	eq := windows.Equipment{Location: time.UTC, MicroStopThreshold: 2 * time.Minute}
	var id, siteID int64
	var ict *float64
	var micro float64
	var tz string
	err := tx.QueryRow(ctx, `SELECT e.id, e.ideal_cycle_time_s, e.micro_stop_threshold_s, s.id, s.time_zone
		FROM equipment e JOIN work_center w ON w.id = e.work_center_id JOIN line l ON l.id = w.line_id
		JOIN area a ON a.id = l.area_id JOIN site s ON s.id = a.site_id
		WHERE e.tenant_id = $1 AND e.code = $2`, tenant, code).Scan(&id, &ict, &micro, &siteID, &tz)
	if errors.Is(err, pgx.ErrNoRows) {
		return eq, nil // not registered: UTC, around the clock, no ideal cycle time (no performance)
	}
	if err != nil {
		return eq, err
	}
	if loc, err := time.LoadLocation(tz); err == nil {
		eq.Location = loc
	}
	if ict != nil {
		eq.IdealCycle = time.Duration(*ict * float64(time.Second))
	}
	eq.MicroStopThreshold = time.Duration(micro * float64(time.Second))
	rows, err := tx.Query(ctx, `SELECT p.id, p.name, extract(epoch FROM p.starts_at)::float8, extract(epoch FROM p.duration)::float8, p.weekdays
		FROM shift_pattern p WHERE p.site_id = $1 AND p.valid_from <= current_date AND (p.valid_to IS NULL OR p.valid_to >= current_date)`, siteID)
	if err != nil {
		return eq, err
	}
	ids := map[int64]int{}
	for rows.Next() {
		var pid int64
		var sh windows.Shift
		var start, dur float64
		var days []int16
		if err := rows.Scan(&pid, &sh.Name, &start, &dur, &days); err != nil {
			rows.Close()
			return eq, err
		}
		sh.StartsAt, sh.Duration = time.Duration(start*float64(time.Second)), time.Duration(dur*float64(time.Second))
		for _, d := range days {
			sh.Weekdays = append(sh.Weekdays, time.Weekday(d%7)) // ISO 7 = Sunday = 0
		}
		ids[pid] = len(eq.Shifts)
		eq.Shifts = append(eq.Shifts, sh)
	}
	rows.Close()
	if err := rows.Err(); err != nil {
		return eq, err
	}
	rows, err = tx.Query(ctx, `SELECT b.shift_pattern_id, extract(epoch FROM b.start_offset)::float8, extract(epoch FROM b.duration)::float8
		FROM planned_break b JOIN shift_pattern p ON p.id = b.shift_pattern_id WHERE p.site_id = $1`, siteID)
	if err != nil {
		return eq, err
	}
	for rows.Next() {
		var pid int64
		var off, dur float64
		if err := rows.Scan(&pid, &off, &dur); err != nil {
			rows.Close()
			return eq, err
		}
		if k, ok := ids[pid]; ok {
			eq.Shifts[k].Breaks = append(eq.Shifts[k].Breaks, windows.Break{Offset: time.Duration(off * float64(time.Second)), Duration: time.Duration(dur * float64(time.Second))})
		}
	}
	rows.Close()
	if err := rows.Err(); err != nil {
		return eq, err
	}
	rows, err = tx.Query(ctx, `SELECT starts_at, ends_at FROM planned_stop WHERE equipment_id = $1`, id)
	if err != nil {
		return eq, err
	}
	for rows.Next() {
		var sp oee.Span
		if err := rows.Scan(&sp.Start, &sp.End); err != nil {
			rows.Close()
			return eq, err
		}
		eq.PlannedStops = append(eq.PlannedStops, sp)
	}
	rows.Close()
	return eq, rows.Err()
}

// states returns the intervals over [from, to), with the state carried in from before.
func (s *Store) states(ctx context.Context, tx pgx.Tx, tenant, eq string, from, to time.Time) ([]oee.StateInterval, error) {
	rows, err := tx.Query(ctx, `
		(SELECT ts, category, reason_code FROM state_observation
		 WHERE tenant_id = $1 AND equipment = $2 AND ts < $3 AND ts >= $3 - $5::interval ORDER BY ts DESC LIMIT 1)
		UNION ALL
		SELECT ts, category, reason_code FROM state_observation
		WHERE tenant_id = $1 AND equipment = $2 AND ts >= $3 AND ts < $4`,
		tenant, eq, from, to, s.MaxGap)
	if err != nil {
		return nil, err
	}
	var obs []oee.Observation
	for rows.Next() {
		var o oee.Observation
		var cat int16
		var reason int64
		if err := rows.Scan(&o.TS, &cat, &reason); err != nil {
			rows.Close()
			return nil, err
		}
		o.State, o.Reason = schemas.StateCategory(cat), uint32(reason)
		obs = append(obs, o)
	}
	rows.Close()
	return oee.Intervals(obs, s.MaxGap), rows.Err()
}

// counts returns the increments over [from, to), each counter anchored by its last
// reading before from.
func (s *Store) counts(ctx context.Context, tx pgx.Tx, tenant, eq string, from, to time.Time) ([]oee.Count, error) {
	rows, err := tx.Query(ctx, `
		SELECT tag, kind, ts, value, wrap FROM (
			SELECT DISTINCT ON (tag) tag, kind, ts, value, wrap FROM counter_reading
			WHERE tenant_id = $1 AND equipment = $2 AND ts < $3 ORDER BY tag, ts DESC) AS anchor
		UNION ALL
		SELECT tag, kind, ts, value, wrap FROM counter_reading
		WHERE tenant_id = $1 AND equipment = $2 AND ts >= $3 AND ts < $4`, tenant, eq, from, to)
	if err != nil {
		return nil, err
	}
	var rs []windows.Reading
	for rows.Next() {
		var r windows.Reading
		var kind int16
		var v, w float64
		if err := rows.Scan(&r.Tag, &kind, &r.TS, &v, &w); err != nil {
			rows.Close()
			return nil, err
		}
		r.Kind, r.Value, r.Wrap = schemas.CounterKind(kind), uint64(v), uint64(w)
		rs = append(rs, r)
	}
	rows.Close()
	return windows.Counts(rs), rows.Err()
}

func (s *Store) write(ctx context.Context, tx pgx.Tx, tenant, eq string, ws []windows.Window) error {
	b := &pgx.Batch{}
	for _, w := range ws {
		b.Queue(`INSERT INTO oee_window (tenant_id, equipment, granularity, starts_at, ends_at, planned_s, run_s, setup_s,
			breakdown_s, micro_stop_s, idle_s, planned_down_s, not_scheduled_s, unknown_s, ideal_run_s, total_count,
			good_count, scrap_count, availability, performance, quality, oee, computed_at)
			VALUES ($1,$2,$3,$4,$5,$6,$7,$8,$9,$10,$11,$12,$13,$14,$15,$16,$17,$18,$19,$20,$21,$22, now())
			ON CONFLICT (tenant_id, equipment, granularity, starts_at) DO UPDATE SET
			ends_at = EXCLUDED.ends_at, planned_s = EXCLUDED.planned_s, run_s = EXCLUDED.run_s, setup_s = EXCLUDED.setup_s,
			breakdown_s = EXCLUDED.breakdown_s, micro_stop_s = EXCLUDED.micro_stop_s, idle_s = EXCLUDED.idle_s,
			planned_down_s = EXCLUDED.planned_down_s, not_scheduled_s = EXCLUDED.not_scheduled_s, unknown_s = EXCLUDED.unknown_s,
			ideal_run_s = EXCLUDED.ideal_run_s, total_count = EXCLUDED.total_count, good_count = EXCLUDED.good_count,
			scrap_count = EXCLUDED.scrap_count, availability = EXCLUDED.availability, performance = EXCLUDED.performance,
			quality = EXCLUDED.quality, oee = EXCLUDED.oee, computed_at = now()`,
			tenant, eq, w.Granularity, w.Start, w.End, w.PlannedS, w.RunS, w.SetupS, w.BreakdownS, w.MicroStopS, w.IdleS,
			w.PlannedDownS, w.NotScheduledS, w.UnknownS, w.IdealRunS, w.TotalCount, w.GoodCount, w.ScrapCount,
			w.Availability, w.Performance, w.Quality, w.OEE)
	}
	return tx.SendBatch(ctx, b).Close()
}
