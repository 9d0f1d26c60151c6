package server

import (
	"context"
	"net/http"
	"strings"
	"time"

	"takt.dev/plant/store"
	"takt.dev/servicekit/pii"
)

// The columns that hold personal data, sealed with Deps.PII and bound to their
// column and tenant: a maintenance event's technician, who created a token, and the
// audit log's actor (a token's name, or the operator of a command).
const (
	TechnicianColumn = "maintenance_event.technician"
	CreatedByColumn  = "api_token.created_by"
	ActorColumn      = "audit_log.actor"
)

// actor is the audit log's actor for p's writes, sealed.
func (s *Server) actor(p principal) string {
	return s.d.PII.Seal(pii.Place(ActorColumn, p.tenant), p.actor)
}

// sealMaintenance returns m as stored: its technician sealed, with its lookup hash.
func (s *Server) sealMaintenance(tenant string, m store.MaintenanceEvent) store.MaintenanceEvent {
	if m.Technician != nil {
		m.TechnicianHash = s.d.PII.Hash(*m.Technician)
		m.Technician = s.d.PII.SealPtr(pii.Place(TechnicianColumn, tenant), m.Technician)
	}
	return m
}

// listMaintenance lists an equipment's maintenance events in a range, with
// technician=NAME those of one technician (found by its lookup hash: the names are
// sealed), technicians opened.
func (s *Server) listMaintenance(w http.ResponseWriter, r *http.Request) {
	var hash []byte
	if name := r.URL.Query().Get("technician"); strings.TrimSpace(name) != "" {
		hash = s.d.PII.Hash(name)
	}
	listOfEquipment(s, w, r, "maintenance", func(ctx context.Context, q store.Querier, equipment string, from, to time.Time) ([]store.MaintenanceEvent, error) {
		events, err := store.Maintenance(ctx, q, equipment, from, to, hash)
		if err != nil {
			return nil, err
		}
		place := pii.Place(TechnicianColumn, tenantOf(ctx))
		for i := range events {
			if events[i].Technician, err = s.d.PII.OpenPtr(place, events[i].Technician); err != nil {
				return nil, err
			}
		}
		return events, nil
	})
}

// openToken opens who created tok.
func (s *Server) openToken(tenant string, tok *Token) error {
	v, err := s.d.PII.Open(pii.Place(CreatedByColumn, tenant), tok.CreatedBy)
	tok.CreatedBy = v
	return err
}
