package store

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/jackc/pgx/v5"

	"takt.dev/plant/oee"
	"takt.dev/schemas"
)

// The seed plan's facts: production runs (which product ran when), the reason-code
// catalogue, downtime events and maintenance events. Reads and writes take a Querier:
// the API's transaction, with the tenant set for row-level security.

// runs returns the production runs of an equipment overlapping [from, to), with
// their product's ideal cycle time; an open run lasts until now.
func runs(ctx context.Context, q Querier, equipmentID int64, from, to, now time.Time) ([]oee.Run, error) {
	rows, err := q.Query(ctx, `SELECT r.start_time, coalesce(r.end_time, greatest($4, r.start_time)), p.code, p.ideal_cycle_time_s
		FROM production_run r JOIN product p ON p.tenant_id = r.tenant_id AND p.id = r.product_id
		WHERE r.equipment_id = $1 AND r.start_time < $3 AND (r.end_time IS NULL OR r.end_time > $2) ORDER BY r.start_time`,
		equipmentID, from, to, now)
	if err != nil {
		return nil, err
	}
	return pgx.CollectRows(rows, func(row pgx.CollectableRow) (oee.Run, error) {
		var r oee.Run
		var ict float64
		err := row.Scan(&r.Start, &r.End, &r.Product, &ict)
		r.IdealCycle = seconds(ict)
		return r, err
	})
}

// productRuns derives runs from the product samples of an equipment over [from, to)
// (the product carried in from before included): each product holds until the next
// sample, "" is none. A product code the tenant has not registered takes the
// equipment's ideal cycle time (fallback).
func productRuns(ctx context.Context, q Querier, tenant, eq string, from, to, until time.Time, fallback time.Duration) ([]oee.Run, error) {
	rows, err := q.Query(ctx, `
		(SELECT o.ts, o.product, p.ideal_cycle_time_s FROM product_observation o
		 LEFT JOIN product p ON p.tenant_id = o.tenant_id AND p.code = o.product
		 WHERE o.tenant_id = $1 AND o.equipment = $2 AND o.ts < $3 ORDER BY o.ts DESC LIMIT 1)
		UNION ALL
		SELECT o.ts, o.product, p.ideal_cycle_time_s FROM product_observation o
		LEFT JOIN product p ON p.tenant_id = o.tenant_id AND p.code = o.product
		WHERE o.tenant_id = $1 AND o.equipment = $2 AND o.ts >= $3 AND o.ts < $4 ORDER BY 1`, tenant, eq, from, to)
	if err != nil {
		return nil, err
	}
	type obs struct {
		ts      time.Time
		product string
		ict     *float64
	}
	list, err := pgx.CollectRows(rows, func(row pgx.CollectableRow) (obs, error) {
		var o obs
		err := row.Scan(&o.ts, &o.product, &o.ict)
		return o, err
	})
	if err != nil {
		return nil, err
	}
	var out []oee.Run
	for i, o := range list {
		end := until
		if i+1 < len(list) {
			end = list[i+1].ts
		}
		if o.product == "" || !end.After(o.ts) {
			continue
		}
		ic := fallback
		if o.ict != nil {
			ic = seconds(*o.ict)
		}
		out = append(out, oee.Run{Span: oee.Span{Start: o.ts, End: end}, Product: o.product, IdealCycle: ic})
	}
	return out, nil
}

// stopCategories are the states a downtime event is made of.
var stopCategories = map[schemas.StateCategory]bool{schemas.StateStoppedUnplanned: true, schemas.StateSetup: true,
	schemas.StateIdle: true, schemas.StatePlannedDown: true}

// writeDowntime replaces the derived downtime events of an equipment that start in
// span with its stop intervals; one still going on at until has no end yet.
func writeDowntime(ctx context.Context, tx pgx.Tx, tenant string, equipmentID int64, span oee.Span, until time.Time, states []oee.StateInterval) error {
	if _, err := tx.Exec(ctx, `DELETE FROM downtime WHERE tenant_id = $1 AND equipment_id = $2 AND source = 'derived'
		AND start_time >= $3 AND start_time < $4`, tenant, equipmentID, span.Start, span.End); err != nil {
		return err
	}
	b := &pgx.Batch{}
	for _, iv := range states {
		if !stopCategories[iv.State] || iv.Start.Before(span.Start) || !iv.Start.Before(span.End) {
			continue
		}
		var end *time.Time
		if iv.End.Before(until) {
			e := iv.End
			end = &e
		}
		b.Queue(`INSERT INTO downtime (tenant_id, equipment_id, start_time, end_time, category, reason_code, planned, source)
			VALUES ($1, $2, $3, $4, $5, $6, $7, 'derived')
			ON CONFLICT (tenant_id, equipment_id, start_time) WHERE source = 'derived' DO UPDATE
			SET end_time = EXCLUDED.end_time, category = EXCLUDED.category, reason_code = EXCLUDED.reason_code, planned = EXCLUDED.planned`,
			tenant, equipmentID, iv.Start, end, int16(iv.State), int64(iv.Reason), iv.State == schemas.StatePlannedDown)
	}
	return tx.SendBatch(ctx, b).Close()
}

// Reason is one entry of a tenant's reason-code catalogue.
type Reason struct {
	Code     uint32  `json:"code"`
	Name     string  `json:"name"`
	Category *string `json:"category"` // breakdown, setup, idle, planned, quality, other
}

// Reasons returns the catalogue, by code.
func Reasons(ctx context.Context, q Querier) (map[uint32]Reason, error) {
	rows, err := q.Query(ctx, `SELECT code, name, category FROM downtime_reason ORDER BY code`)
	if err != nil {
		return nil, err
	}
	list, err := pgx.CollectRows(rows, func(row pgx.CollectableRow) (Reason, error) {
		var r Reason
		var code int64
		err := row.Scan(&code, &r.Name, &r.Category)
		r.Code = uint32(code)
		return r, err
	})
	m := make(map[uint32]Reason, len(list))
	for _, r := range list {
		m[r.Code] = r
	}
	return m, err
}

// PutReason creates or renames a reason code.
func PutReason(ctx context.Context, q Querier, tenant string, r Reason) error {
	_, err := q.Exec(ctx, `INSERT INTO downtime_reason (tenant_id, code, name, category) VALUES ($1, $2, $3, $4)
		ON CONFLICT (tenant_id, code) DO UPDATE SET name = EXCLUDED.name, category = EXCLUDED.category`, tenant, int64(r.Code), r.Name, r.Category)
	return err
}

// DeleteReason removes a reason code; it reports whether there was one.
func DeleteReason(ctx context.Context, q Querier, code uint32) (bool, error) {
	tag, err := q.Exec(ctx, `DELETE FROM downtime_reason WHERE code = $1`, int64(code))
	return tag.RowsAffected() > 0, err
}

// ErrNotFound is returned when the equipment, run or event named does not exist.
var ErrNotFound = errors.New("not found")

// ProductionRun is a product on an equipment over a time; End nil while it runs.
type ProductionRun struct {
	ID      int64      `json:"id"`
	Product string     `json:"product"`
	Start   time.Time  `json:"start"`
	End     *time.Time `json:"end"`
	Order   *string    `json:"order_id"`
	Batch   *string    `json:"batch_number"`
}

// AddRun records a production run and marks the days it touches for recomputation.
// Runs of one equipment must not overlap.
func AddRun(ctx context.Context, q Querier, tenant, equipment string, r ProductionRun) (int64, error) {
	var overlap bool
	end := r.End
	if err := q.QueryRow(ctx, `SELECT EXISTS (SELECT 1 FROM production_run x JOIN equipment e ON e.id = x.equipment_id
		WHERE e.code = $1 AND x.start_time < coalesce($3::timestamptz, 'infinity') AND coalesce(x.end_time, 'infinity') > $2::timestamptz)`,
		equipment, r.Start, end).Scan(&overlap); err != nil {
		return 0, err
	}
	if overlap {
		return 0, fmt.Errorf("%w: overlaps another run of equipment %q", ErrConflict, equipment)
	}
	var id int64
	err := q.QueryRow(ctx, `INSERT INTO production_run (tenant_id, equipment_id, product_id, order_id, batch_number, start_time, end_time)
		SELECT $1, e.id, p.id, $4, $5, $6, $7 FROM equipment e, product p WHERE e.code = $2 AND p.code = $3 RETURNING id`,
		tenant, equipment, r.Product, r.Order, r.Batch, r.Start, end).Scan(&id)
	if errors.Is(err, pgx.ErrNoRows) {
		return 0, fmt.Errorf("%w: equipment %q or product %q", ErrNotFound, equipment, r.Product)
	}
	if err != nil {
		return 0, err
	}
	_, err = MarkChanged(ctx, q, Scope{Tenant: tenant, Equipment: equipment}, r.Start, orInfinity(end))
	return id, err
}

// ErrConflict is returned when a change contradicts what is stored.
var ErrConflict = errors.New("conflict")

func orInfinity(t *time.Time) time.Time {
	if t == nil {
		return time.Time{}
	}
	return *t
}

// Runs lists an equipment's production runs overlapping [from, to).
func Runs(ctx context.Context, q Querier, equipment string, from, to time.Time) ([]ProductionRun, error) {
	rows, err := q.Query(ctx, `SELECT r.id, p.code, r.start_time, r.end_time, r.order_id, r.batch_number
		FROM production_run r JOIN equipment e ON e.id = r.equipment_id JOIN product p ON p.id = r.product_id
		WHERE e.code = $1 AND r.start_time < $3 AND (r.end_time IS NULL OR r.end_time > $2) ORDER BY r.start_time`, equipment, from, to)
	if err != nil {
		return nil, err
	}
	return pgx.CollectRows(rows, pgx.RowToStructByPos[ProductionRun])
}

// DeleteRun removes a run and marks the days it touched.
func DeleteRun(ctx context.Context, q Querier, tenant, equipment string, id int64) (ProductionRun, error) {
	var r ProductionRun
	err := q.QueryRow(ctx, `DELETE FROM production_run x USING equipment e, product p
		WHERE e.id = x.equipment_id AND p.id = x.product_id AND e.code = $1 AND x.id = $2
		RETURNING x.id, p.code, x.start_time, x.end_time, x.order_id, x.batch_number`, equipment, id).
		Scan(&r.ID, &r.Product, &r.Start, &r.End, &r.Order, &r.Batch)
	if errors.Is(err, pgx.ErrNoRows) {
		return r, fmt.Errorf("%w: run %d of equipment %q", ErrNotFound, id, equipment)
	}
	if err != nil {
		return r, err
	}
	_, err = MarkChanged(ctx, q, Scope{Tenant: tenant, Equipment: equipment}, r.Start, orInfinity(r.End))
	return r, err
}

// DowntimeEvent is one stop of an equipment: derived from its stop intervals, or
// entered by a person.
type DowntimeEvent struct {
	Start      time.Time  `json:"start"`
	End        *time.Time `json:"end"` // nil while it lasts
	State      string     `json:"state"`
	Reason     uint32     `json:"reason"`
	ReasonName string     `json:"reason_name"`
	Planned    bool       `json:"planned"`
	Source     string     `json:"source"` // derived or manual
	Text       string     `json:"text,omitempty"`
}

// DowntimeEvents lists an equipment's downtime events starting in [from, to), with
// the catalogue's reason names.
func DowntimeEvents(ctx context.Context, q Querier, equipment string, from, to time.Time) ([]DowntimeEvent, error) {
	rows, err := q.Query(ctx, `SELECT d.start_time, d.end_time, d.category, d.reason_code, coalesce(r.name, ''), d.planned, d.source, d.reason_text
		FROM downtime d JOIN equipment e ON e.id = d.equipment_id
		LEFT JOIN downtime_reason r ON r.tenant_id = d.tenant_id AND r.code = d.reason_code
		WHERE e.code = $1 AND d.start_time >= $2 AND d.start_time < $3 ORDER BY d.start_time`, equipment, from, to)
	if err != nil {
		return nil, err
	}
	return pgx.CollectRows(rows, func(row pgx.CollectableRow) (DowntimeEvent, error) {
		var d DowntimeEvent
		var cat int16
		var code int64
		err := row.Scan(&d.Start, &d.End, &cat, &code, &d.ReasonName, &d.Planned, &d.Source, &d.Text)
		d.State, d.Reason = schemas.StateCategory(cat).String(), uint32(code)
		return d, err
	})
}

// MaintenanceEvent is a maintenance intervention on an equipment.
type MaintenanceEvent struct {
	ID          int64      `json:"id"`
	Kind        string     `json:"kind"` // preventive, corrective, predictive, inspection
	Start       time.Time  `json:"start"`
	End         *time.Time `json:"end"`
	Description string     `json:"description"`
	Technician  *string    `json:"technician"` // sealed (servicekit/pii) in the database

	// TechnicianHash is the technician's lookup hash (pii.Keyring.Hash), written
	// with it and never shown.
	TechnicianHash []byte `json:"-" db:"-"`
}

// AddMaintenance records a maintenance event.
func AddMaintenance(ctx context.Context, q Querier, tenant, equipment string, m MaintenanceEvent) (int64, error) {
	var id int64
	err := q.QueryRow(ctx, `INSERT INTO maintenance_event (tenant_id, equipment_id, kind, start_time, end_time, description, technician, technician_hash)
		SELECT $1, id, $3, $4, $5, $6, $7, $8 FROM equipment WHERE code = $2 RETURNING id`,
		tenant, equipment, m.Kind, m.Start, m.End, m.Description, m.Technician, m.TechnicianHash).Scan(&id)
	if errors.Is(err, pgx.ErrNoRows) {
		return 0, fmt.Errorf("%w: equipment %q", ErrNotFound, equipment)
	}
	return id, err
}

// Maintenance lists an equipment's maintenance events starting in [from, to), of
// the technician whose lookup hash is technicianHash when it is not nil.
func Maintenance(ctx context.Context, q Querier, equipment string, from, to time.Time, technicianHash []byte) ([]MaintenanceEvent, error) {
	rows, err := q.Query(ctx, `SELECT m.id, m.kind, m.start_time, m.end_time, m.description, m.technician
		FROM maintenance_event m JOIN equipment e ON e.id = m.equipment_id
		WHERE e.code = $1 AND m.start_time >= $2 AND m.start_time < $3 AND ($4::bytea IS NULL OR m.technician_hash = $4)
		ORDER BY m.start_time`, equipment, from, to, technicianHash)
	if err != nil {
		return nil, err
	}
	return pgx.CollectRows(rows, pgx.RowToStructByPos[MaintenanceEvent])
}

// MarkProductRuns marks the days of every run of a product for recomputation (its
// ideal cycle time changed). It returns how many equipment-days were marked.
func MarkProductRuns(ctx context.Context, q Querier, product string) (int64, error) {
	tag, err := q.Exec(ctx, `INSERT INTO oee_dirty (tenant_id, equipment, day)
		SELECT DISTINCT e.tenant_id, e.code, d::date FROM production_run r JOIN product p ON p.id = r.product_id
		JOIN equipment e ON e.id = r.equipment_id
		CROSS JOIN LATERAL generate_series(date_trunc('day', r.start_time AT TIME ZONE 'UTC'),
			date_trunc('day', coalesce(r.end_time, now()) AT TIME ZONE 'UTC'), interval '1 day') AS d
		WHERE p.code = $1
		ON CONFLICT (tenant_id, equipment, day) DO UPDATE SET marked_at = now(), attempts = 0, not_before = '-infinity'`, product)
	return tag.RowsAffected(), err
}

// ChangeRun moves a run (its start, its end: ending an open run, or reopening it with
// a nil end and reopen set) and marks the days it touched before and after.
func ChangeRun(ctx context.Context, q Querier, tenant, equipment string, id int64, start, end *time.Time, reopen bool) (before, after ProductionRun, err error) {
	err = q.QueryRow(ctx, `SELECT x.id, p.code, x.start_time, x.end_time, x.order_id, x.batch_number
		FROM production_run x JOIN equipment e ON e.id = x.equipment_id JOIN product p ON p.id = x.product_id
		WHERE e.code = $1 AND x.id = $2 FOR UPDATE OF x`, equipment, id).
		Scan(&before.ID, &before.Product, &before.Start, &before.End, &before.Order, &before.Batch)
	if errors.Is(err, pgx.ErrNoRows) {
		return before, after, fmt.Errorf("%w: run %d of equipment %q", ErrNotFound, id, equipment)
	}
	if err != nil {
		return before, after, err
	}
	after = before
	if start != nil {
		after.Start = *start
	}
	if end != nil {
		after.End = end
	} else if reopen {
		after.End = nil
	}
	if after.End != nil && !after.End.After(after.Start) {
		return before, after, fmt.Errorf("%w: the run would end before it starts", ErrInvalid)
	}
	var overlap bool
	if err := q.QueryRow(ctx, `SELECT EXISTS (SELECT 1 FROM production_run x JOIN equipment e ON e.id = x.equipment_id
		WHERE e.code = $1 AND x.id <> $4 AND x.start_time < coalesce($3::timestamptz, 'infinity') AND coalesce(x.end_time, 'infinity') > $2::timestamptz)`,
		equipment, after.Start, after.End, id).Scan(&overlap); err != nil {
		return before, after, err
	}
	if overlap {
		return before, after, fmt.Errorf("%w: overlaps another run of equipment %q", ErrConflict, equipment)
	}
	if _, err := q.Exec(ctx, `UPDATE production_run SET start_time = $2, end_time = $3 WHERE id = $1`, id, after.Start, after.End); err != nil {
		return before, after, err
	}
	for _, r := range []ProductionRun{before, after} {
		if _, err := MarkChanged(ctx, q, Scope{Tenant: tenant, Equipment: equipment}, r.Start, orInfinity(r.End)); err != nil {
			return before, after, err
		}
	}
	return before, after, nil
}

// ErrInvalid is returned when a change makes no sense (an end before a start).
var ErrInvalid = errors.New("invalid")

// ChangeMaintenance updates (m non-nil) or deletes (m nil) a maintenance event and
// returns it as it was.
func ChangeMaintenance(ctx context.Context, q Querier, equipment string, id int64, m *MaintenanceEvent) (MaintenanceEvent, error) {
	var before MaintenanceEvent
	err := q.QueryRow(ctx, `SELECT x.id, x.kind, x.start_time, x.end_time, x.description, x.technician FROM maintenance_event x
		JOIN equipment e ON e.id = x.equipment_id WHERE e.code = $1 AND x.id = $2 FOR UPDATE OF x`, equipment, id).
		Scan(&before.ID, &before.Kind, &before.Start, &before.End, &before.Description, &before.Technician)
	if errors.Is(err, pgx.ErrNoRows) {
		return before, fmt.Errorf("%w: maintenance event %d of equipment %q", ErrNotFound, id, equipment)
	}
	if err != nil {
		return before, err
	}
	if m == nil {
		_, err = q.Exec(ctx, `DELETE FROM maintenance_event WHERE id = $1`, id)
		return before, err
	}
	_, err = q.Exec(ctx, `UPDATE maintenance_event SET kind = $2, start_time = $3, end_time = $4, description = $5, technician = $6,
		technician_hash = $7 WHERE id = $1`, id, m.Kind, m.Start, m.End, m.Description, m.Technician, m.TechnicianHash)
	return before, err
}
