package server

import (
	"context"
	"net/http"
	"time"

	"github.com/prometheus/client_golang/prometheus/promhttp"
	"go.opentelemetry.io/contrib/instrumentation/net/http/otelhttp"

	"takt.dev/servicekit/tracing"
)

// routes is the whole HTTP surface.
func (s *Server) routes() http.Handler {
	mux := http.NewServeMux()
	mux.HandleFunc("GET /{$}", func(w http.ResponseWriter, _ *http.Request) {
		w.Header().Set("Content-Type", "text/html; charset=utf-8")
		// Scripts only from this server, never inline; the page's style attributes
		// are its only inline content (bar widths, timeline positions).
		w.Header().Set("Content-Security-Policy", "default-src 'none'; script-src 'self'; connect-src 'self'; style-src 'self' 'unsafe-inline'; img-src 'self'; base-uri 'none'; form-action 'none'; frame-ancestors 'none'")
		w.Write(dashboard)
	})
	mux.HandleFunc("GET /dashboard.js", func(w http.ResponseWriter, _ *http.Request) {
		w.Header().Set("Content-Type", "text/javascript; charset=utf-8")
		w.Write(dashboardJS)
	})
	mux.HandleFunc("GET /api/v1/openapi.json", func(w http.ResponseWriter, _ *http.Request) {
		w.Header().Set("Content-Type", "application/json")
		w.Write(openapi)
	})
	mux.HandleFunc("GET /api/v1/sites", s.auth(s.listSites))
	mux.HandleFunc("POST /api/v1/sites", s.auth(s.createSite))
	mux.HandleFunc("PATCH /api/v1/sites/{code}", s.auth(s.patchSite))
	mux.HandleFunc("GET /api/v1/sites/{code}/shifts", s.auth(s.listShifts))
	mux.HandleFunc("POST /api/v1/sites/{code}/shifts", s.auth(s.createShift))
	mux.HandleFunc("PATCH /api/v1/sites/{code}/shifts/{id}", s.auth(s.patchShift))
	mux.HandleFunc("DELETE /api/v1/sites/{code}/shifts/{id}", s.auth(s.deleteShift))
	mux.HandleFunc("DELETE /api/v1/sites/{code}", s.auth(s.deleteSite))
	mux.HandleFunc("GET /api/v1/recompute-failures", s.auth(s.failures))
	mux.HandleFunc("GET /api/v1/dead-letters", s.auth(s.deadLetters))
	mux.HandleFunc("GET /api/v1/reasons", s.auth(s.listReasons))
	mux.HandleFunc("POST /api/v1/reasons", s.auth(s.putReason))
	mux.HandleFunc("PATCH /api/v1/reasons/{code}", s.auth(s.putReason))
	mux.HandleFunc("DELETE /api/v1/reasons/{code}", s.auth(s.deleteReason))
	mux.HandleFunc("GET /api/v1/equipment/{code}/runs", s.auth(s.listRuns))
	mux.HandleFunc("POST /api/v1/equipment/{code}/runs", s.auth(s.createRun))
	mux.HandleFunc("PATCH /api/v1/equipment/{code}/runs/{id}", s.auth(s.patchRun))
	mux.HandleFunc("DELETE /api/v1/equipment/{code}/runs/{id}", s.auth(s.deleteRun))
	mux.HandleFunc("GET /api/v1/equipment/{code}/downtime-events", s.auth(s.downtimeEvents))
	mux.HandleFunc("GET /api/v1/equipment/{code}/maintenance", s.auth(s.listMaintenance))
	mux.HandleFunc("POST /api/v1/equipment/{code}/maintenance", s.auth(s.createMaintenance))
	mux.HandleFunc("PATCH /api/v1/equipment/{code}/maintenance/{id}", s.auth(s.changeMaintenance))
	mux.HandleFunc("DELETE /api/v1/equipment/{code}/maintenance/{id}", s.auth(s.changeMaintenance))
	mux.HandleFunc("GET /api/v1/lines", s.auth(s.listLines))
	mux.HandleFunc("POST /api/v1/lines", s.auth(s.createLine))
	mux.HandleFunc("PATCH /api/v1/lines/{code}", s.auth(s.patchLine))
	mux.HandleFunc("DELETE /api/v1/lines/{code}", s.auth(s.deleteLine))
	mux.HandleFunc("GET /api/v1/products", s.auth(s.listProducts))
	mux.HandleFunc("POST /api/v1/products", s.auth(s.createProduct))
	mux.HandleFunc("PATCH /api/v1/products/{code}", s.auth(s.patchProduct))
	mux.HandleFunc("DELETE /api/v1/products/{code}", s.auth(s.deleteProduct))
	mux.HandleFunc("POST /api/v1/equipment", s.auth(s.createEquipment))
	mux.HandleFunc("GET /api/v1/equipment/{code}/planned-stops", s.auth(s.listPlannedStops))
	mux.HandleFunc("POST /api/v1/equipment/{code}/planned-stops", s.auth(s.createPlannedStop))
	mux.HandleFunc("PATCH /api/v1/equipment/{code}/planned-stops/{id}", s.auth(s.changePlannedStop))
	mux.HandleFunc("DELETE /api/v1/equipment/{code}/planned-stops/{id}", s.auth(s.changePlannedStop))
	mux.HandleFunc("GET /api/v1/equipment", s.auth(s.listEquipment))
	mux.HandleFunc("GET /api/v1/equipment/{code}", s.auth(s.getEquipment))
	mux.HandleFunc("PATCH /api/v1/equipment/{code}", s.auth(s.patchEquipment))
	mux.HandleFunc("DELETE /api/v1/equipment/{code}", s.auth(s.deleteEquipment))
	mux.HandleFunc("GET /api/v1/equipment/{code}/oee", s.auth(s.oee("equipment")))
	mux.HandleFunc("GET /api/v1/lines/{code}/oee", s.auth(s.oee("line")))
	mux.HandleFunc("GET /api/v1/sites/{code}/oee", s.auth(s.oee("site")))
	mux.HandleFunc("GET /api/v1/equipment/{code}/timeline", s.auth(s.timeline))
	mux.HandleFunc("GET /api/v1/equipment/{code}/downtime", s.auth(s.downtime))
	mux.HandleFunc("GET /api/v1/equipment/{code}/counts", s.auth(s.counts))
	mux.HandleFunc("GET /api/v1/tokens", s.authScope(ScopeAdmin, s.listTokens))
	mux.HandleFunc("DELETE /api/v1/tokens/{id}", s.authScope(ScopeAdmin, s.revokeToken))
	mux.HandleFunc("/api/", func(w http.ResponseWriter, r *http.Request) {
		s.fail(w, r, &apiError{http.StatusNotFound, "not_found", "no such endpoint: " + r.Method + " " + r.URL.Path})
	})
	mux.Handle("GET /metrics", promhttp.HandlerFor(s.d.Registry, promhttp.HandlerOpts{Registry: s.d.Registry}))
	mux.HandleFunc("GET /healthz", func(w http.ResponseWriter, _ *http.Request) { w.Write([]byte("ok\n")) })
	mux.HandleFunc("GET /readyz", func(w http.ResponseWriter, r *http.Request) {
		if err := s.d.Primary.Ping(r.Context()); err != nil {
			s.d.Log.Warn("readiness: the database does not answer", "err", err) // the details for the operator, not the caller
			http.Error(w, "database unreachable", http.StatusServiceUnavailable)
			return
		}
		w.Write([]byte("ready\n"))
	})
	h := s.m.instrument(secure(s.d.RequestTimeout, mux))
	if tracing.Enabled() {
		// A server span per request (continuing a caller's traceparent), named by the
		// route once the mux has chosen it; the SQL it runs are its children.
		h = otelhttp.NewHandler(h, "HTTP", otelhttp.WithSpanNameFormatter(func(_ string, r *http.Request) string {
			if r.Pattern != "" {
				return r.Pattern // "GET /api/v1/equipment/{code}/oee"
			}
			return r.Method
		}))
	}
	return h
}

// secure sets the headers every answer carries, and bounds every request's time:
// its context ends after timeout (the database calls with it).
func secure(timeout time.Duration, h http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		hd := w.Header()
		hd.Set("X-Content-Type-Options", "nosniff")
		hd.Set("Referrer-Policy", "no-referrer")
		hd.Set("X-Frame-Options", "DENY")
		hd.Set("Cache-Control", "no-store")
		if r.TLS != nil {
			hd.Set("Strict-Transport-Security", "max-age=31536000")
		}
		ctx, cancel := context.WithTimeout(r.Context(), timeout)
		defer cancel()
		r2 := r.WithContext(ctx)
		h.ServeHTTP(w, r2)
		r.Pattern = r2.Pattern // for the metrics around this
	})
}
