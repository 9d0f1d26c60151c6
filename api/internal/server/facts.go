package server

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"strconv"
	"time"

	"github.com/jackc/pgx/v5"

	"takt.dev/plant/store"
)

// The seed plan's facts through the API: production runs (which product ran when;
// performance uses the running product's ideal cycle time), the reason-code
// catalogue, downtime events and maintenance events. Every change is audited; a run
// change marks the days it touches for recomputation.

// storeError turns the plant store's refusals into answers.
func storeError(err error) error {
	switch {
	case errors.Is(err, store.ErrNotFound):
		return notFound(err.Error())
	case errors.Is(err, store.ErrConflict):
		return &apiError{http.StatusConflict, "conflict", err.Error()}
	case errors.Is(err, store.ErrInvalid):
		return &apiError{http.StatusBadRequest, "invalid", err.Error()}
	}
	return err
}

func tenantOf(ctx context.Context) string { return ctx.Value(principalKey).(principal).tenant }

func (s *Server) listRuns(w http.ResponseWriter, r *http.Request) {
	listOfEquipment(s, w, r, "runs", store.Runs)
}

// listOfEquipment answers {key: [...]} with what fetch finds for the equipment in the
// path over the request's range (404 when there is no such equipment).
func listOfEquipment[T any](s *Server, w http.ResponseWriter, r *http.Request, key string,
	fetch func(ctx context.Context, q store.Querier, equipment string, from, to time.Time) ([]T, error)) {
	from, to, err := rangeParams(r)
	if err != nil {
		s.fail(w, r, err)
		return
	}
	out := []T{}
	err = s.inTenant(r.Context(), false, func(tx pgx.Tx) error {
		if err := scopeExists(r.Context(), tx, "equipment", r.PathValue("code")); err != nil {
			return err
		}
		got, err := fetch(r.Context(), tx, r.PathValue("code"), from, to)
		out = append(out, got...)
		return err
	})
	if err != nil {
		s.fail(w, r, err)
		return
	}
	writeJSON(w, http.StatusOK, map[string]any{key: out})
}

func (s *Server) createRun(w http.ResponseWriter, r *http.Request) {
	var in store.ProductionRun
	if err := decodeBody(w, r, &in); err != nil {
		s.fail(w, r, err)
		return
	}
	if in.Product == "" {
		s.fail(w, r, badParam("product", "missing (a product code)"))
		return
	}
	if err := checkSpan(in.Start, in.End); err != nil {
		s.fail(w, r, err)
		return
	}
	code := r.PathValue("code")
	s.change(w, r, "production_run", "insert", http.StatusCreated, func(ctx context.Context, tx pgx.Tx) (string, any, any, error) {
		id, err := store.AddRun(ctx, tx, tenantOf(ctx), code, in)
		in.ID = id
		return strconv.FormatInt(id, 10), nil, in, storeError(err)
	})
}

func (s *Server) deleteRun(w http.ResponseWriter, r *http.Request) {
	id, err := strconv.ParseInt(r.PathValue("id"), 10, 64)
	if err != nil {
		s.fail(w, r, badParam("id", "%q is not a run id", r.PathValue("id")))
		return
	}
	s.change(w, r, "production_run", "delete", http.StatusOK, func(ctx context.Context, tx pgx.Tx) (string, any, any, error) {
		before, err := store.DeleteRun(ctx, tx, tenantOf(ctx), r.PathValue("code"), id)
		return strconv.FormatInt(id, 10), before, nil, storeError(err)
	})
}

func (s *Server) listReasons(w http.ResponseWriter, r *http.Request) {
	out := []store.Reason{}
	err := s.inTenant(r.Context(), false, func(tx pgx.Tx) error {
		m, err := store.Reasons(r.Context(), tx)
		for _, v := range m {
			out = append(out, v)
		}
		return err
	})
	if err != nil {
		s.fail(w, r, err)
		return
	}
	sortReasons(out)
	writeJSON(w, http.StatusOK, map[string]any{"reasons": out})
}

func sortReasons(rs []store.Reason) {
	for i := 1; i < len(rs); i++ {
		for j := i; j > 0 && rs[j].Code < rs[j-1].Code; j-- {
			rs[j], rs[j-1] = rs[j-1], rs[j]
		}
	}
}

// putReason creates (POST /reasons) or renames (PATCH /reasons/{code}) a reason code.
func (s *Server) putReason(w http.ResponseWriter, r *http.Request) {
	var in store.Reason
	if err := decodeBody(w, r, &in); err != nil {
		s.fail(w, r, err)
		return
	}
	action, status := "insert", http.StatusCreated
	if c := r.PathValue("code"); c != "" {
		n, err := strconv.ParseUint(c, 10, 32)
		if err != nil {
			s.fail(w, r, badParam("code", "%q is not a reason code (0 to 4294967295)", c))
			return
		}
		in.Code, action, status = uint32(n), "update", http.StatusOK
	}
	if in.Name == "" || len(in.Name) > 200 {
		s.fail(w, r, badParam("name", "want 1 to 200 characters"))
		return
	}
	s.change(w, r, "downtime_reason", action, status, func(ctx context.Context, tx pgx.Tx) (string, any, any, error) {
		m, err := store.Reasons(ctx, tx)
		if err != nil {
			return "", nil, nil, err
		}
		before, exists := m[in.Code]
		switch {
		case action == "update" && !exists:
			return "", nil, nil, notFound(fmt.Sprintf("reason %d", in.Code))
		case action == "insert" && exists:
			return "", nil, nil, &apiError{http.StatusConflict, "exists", fmt.Sprintf("reason %d already exists (PATCH /reasons/%d renames it)", in.Code, in.Code)}
		}
		var b any
		if exists {
			b = before
		}
		return strconv.FormatUint(uint64(in.Code), 10), b, in, store.PutReason(ctx, tx, tenantOf(ctx), in)
	})
}

func (s *Server) deleteReason(w http.ResponseWriter, r *http.Request) {
	n, err := strconv.ParseUint(r.PathValue("code"), 10, 32)
	if err != nil {
		s.fail(w, r, badParam("code", "%q is not a reason code", r.PathValue("code")))
		return
	}
	s.change(w, r, "downtime_reason", "delete", http.StatusOK, func(ctx context.Context, tx pgx.Tx) (string, any, any, error) {
		ok, err := store.DeleteReason(ctx, tx, uint32(n))
		if err == nil && !ok {
			err = notFound(fmt.Sprintf("reason %d", n))
		}
		return strconv.FormatUint(n, 10), map[string]any{"code": n}, nil, err
	})
}

func (s *Server) downtimeEvents(w http.ResponseWriter, r *http.Request) {
	listOfEquipment(s, w, r, "events", store.DowntimeEvents)
}

var maintenanceKinds = map[string]bool{"preventive": true, "corrective": true, "predictive": true, "inspection": true}

// checkSpan checks a start that must be given and an end, if given, after it.
func checkSpan(start time.Time, end *time.Time) error {
	if start.IsZero() {
		return badParam("start", "missing (an RFC 3339 time)")
	}
	if end != nil && !end.After(start) {
		return badParam("end", "must be after start")
	}
	return nil
}

// checkMaintenance checks a maintenance event's kind and times.
func checkMaintenance(m *store.MaintenanceEvent) error {
	if !maintenanceKinds[m.Kind] {
		return badParam("kind", "%q: want preventive, corrective, predictive or inspection", m.Kind)
	}
	return checkSpan(m.Start, m.End)
}

func (s *Server) createMaintenance(w http.ResponseWriter, r *http.Request) {
	var in store.MaintenanceEvent
	if err := decodeBody(w, r, &in); err != nil {
		s.fail(w, r, err)
		return
	}
	if err := checkMaintenance(&in); err != nil {
		s.fail(w, r, err)
		return
	}
	code := r.PathValue("code")
	s.changeShowing(w, r, "maintenance_event", "insert", http.StatusCreated, func(ctx context.Context, tx pgx.Tx) (string, any, any, error) {
		sealed := s.sealMaintenance(tenantOf(ctx), in)
		id, err := store.AddMaintenance(ctx, tx, tenantOf(ctx), code, sealed)
		in.ID, sealed.ID = id, id
		return strconv.FormatInt(id, 10), nil, sealed, storeError(err)
	}, &in)
}

// DeadLetter is one refused message of the tenant, as the ingest sink indexed it.
type DeadLetter struct {
	ReceivedAt     time.Time  `json:"received_at"`
	Reason         string     `json:"reason"`
	Error          string     `json:"error"`
	Source         string     `json:"source"`
	PayloadBytes   int        `json:"payload_bytes"`
	PayloadSHA256  string     `json:"payload_sha256"`
	Truncated      bool       `json:"truncated"`
	KafkaPartition int        `json:"kafka_partition"`
	KafkaOffset    int64      `json:"kafka_offset"`
	ReplayedAt     *time.Time `json:"replayed_at"` // when takt-ingest deadletter replay wrote it back; nil if never
}

// deadLetters lists the tenant's refused messages received in a range, newest first
// (?reason= narrows them), at most 1000.
func (s *Server) deadLetters(w http.ResponseWriter, r *http.Request) {
	from, to, err := rangeParams(r)
	if err != nil {
		s.fail(w, r, err)
		return
	}
	reason := r.URL.Query().Get("reason")
	out := []DeadLetter{}
	err = s.inTenant(r.Context(), false, func(tx pgx.Tx) error {
		rows, err := tx.Query(r.Context(), `SELECT received_at, reason, error, source, payload_bytes, payload_sha256, truncated, kafka_partition, kafka_offset, replayed_at
			FROM dead_letter WHERE received_at >= $1 AND received_at < $2 AND ($3 = '' OR reason = $3) ORDER BY received_at DESC LIMIT 1000`, from, to, reason)
		if err != nil {
			return err
		}
		got, err := pgx.CollectRows(rows, pgx.RowToStructByPos[DeadLetter])
		out = append(out, got...)
		return err
	})
	if err != nil {
		s.fail(w, r, err)
		return
	}
	writeJSON(w, http.StatusOK, map[string]any{"dead_letters": out})
}

// patchRun moves a production run: its start, or its end ("end": null reopens it).
func (s *Server) patchRun(w http.ResponseWriter, r *http.Request) {
	id, err := strconv.ParseInt(r.PathValue("id"), 10, 64)
	if err != nil {
		s.fail(w, r, badParam("id", "%q is not a run id", r.PathValue("id")))
		return
	}
	var in map[string]json.RawMessage
	if err := decodeBody(w, r, &in); err != nil {
		s.fail(w, r, err)
		return
	}
	var start, end *time.Time
	reopen := false
	for k, v := range in {
		switch k {
		case "start", "end":
			if k == "end" && string(v) == "null" {
				reopen = true
				continue
			}
			var t time.Time
			if err := json.Unmarshal(v, &t); err != nil {
				s.fail(w, r, badParam(k, "%s is not an RFC 3339 time", v))
				return
			}
			if k == "start" {
				start = &t
			} else {
				end = &t
			}
		default:
			s.fail(w, r, badParam(k, "unknown field (a run's start and end can change)"))
			return
		}
	}
	s.change(w, r, "production_run", "update", http.StatusOK, func(ctx context.Context, tx pgx.Tx) (string, any, any, error) {
		before, after, err := store.ChangeRun(ctx, tx, tenantOf(ctx), r.PathValue("code"), id, start, end, reopen)
		return strconv.FormatInt(id, 10), before, after, storeError(err)
	})
}

// changeMaintenance replaces (PATCH, the whole event) or deletes a maintenance event.
func (s *Server) changeMaintenance(w http.ResponseWriter, r *http.Request) {
	id, err := strconv.ParseInt(r.PathValue("id"), 10, 64)
	if err != nil {
		s.fail(w, r, badParam("id", "%q is not an event id", r.PathValue("id")))
		return
	}
	var in *store.MaintenanceEvent
	if r.Method == http.MethodPatch {
		in = &store.MaintenanceEvent{}
		if err := decodeBody(w, r, in); err != nil {
			s.fail(w, r, err)
			return
		}
		if err := checkMaintenance(in); err != nil {
			s.fail(w, r, err)
			return
		}
		in.ID = id
	}
	action := map[string]string{http.MethodPatch: "update", http.MethodDelete: "delete"}[r.Method]
	// The audit log keeps the technician sealed, before and after; the answer shows it.
	s.changeShowing(w, r, "maintenance_event", action, http.StatusOK, func(ctx context.Context, tx pgx.Tx) (string, any, any, error) {
		if in == nil {
			before, err := store.ChangeMaintenance(ctx, tx, r.PathValue("code"), id, nil)
			return strconv.FormatInt(id, 10), before, nil, storeError(err)
		}
		sealed := s.sealMaintenance(tenantOf(ctx), *in)
		before, err := store.ChangeMaintenance(ctx, tx, r.PathValue("code"), id, &sealed)
		return strconv.FormatInt(id, 10), before, sealed, storeError(err)
	}, in)
}
