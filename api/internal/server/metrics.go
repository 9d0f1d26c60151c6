package server

import (
	"net/http"
	"strconv"
	"strings"
	"time"

	"github.com/prometheus/client_golang/prometheus"
)

type metrics struct {
	requests  *prometheus.CounterVec
	latency   *prometheus.HistogramVec
	fallbacks prometheus.Counter

	authFailures, authThrottled, bogusHits prometheus.Counter
	rateLimited                            *prometheus.CounterVec
}

func newMetrics(reg prometheus.Registerer) *metrics {
	m := &metrics{
		requests: prometheus.NewCounterVec(prometheus.CounterOpts{Name: "takt_api_requests_total",
			Help: "HTTP requests by method, route (the pattern that served it) and status code."}, []string{"method", "route", "code"}),
		latency: prometheus.NewHistogramVec(prometheus.HistogramOpts{Name: "takt_api_request_seconds", Help: "HTTP request latency by method and route.",
			Buckets: prometheus.ExponentialBuckets(0.0005, 2, 14)}, []string{"method", "route"}),
		fallbacks: prometheus.NewCounter(prometheus.CounterOpts{Name: "takt_api_replica_fallbacks_total", Help: "Reads sent to the primary because a replica failed."}),
	}
	m.authFailures = prometheus.NewCounter(prometheus.CounterOpts{Name: "takt_api_auth_failures_total",
		Help: "Requests with an unknown, revoked or expired token."})
	m.authThrottled = prometheus.NewCounter(prometheus.CounterOpts{Name: "takt_api_auth_throttled_total",
		Help: "Requests refused (429) without a database query: their address presented too many unknown tokens."})
	m.bogusHits = prometheus.NewCounter(prometheus.CounterOpts{Name: "takt_api_unknown_token_cache_hits_total",
		Help: "Unknown tokens refused from the negative cache, without a database query."})
	m.rateLimited = prometheus.NewCounterVec(prometheus.CounterOpts{Name: "takt_api_rate_limited_total",
		Help: "Requests refused (429) past the rate limit of their token or client address."}, []string{"by"})
	for _, by := range []string{"token", "address"} {
		m.rateLimited.WithLabelValues(by) // at zero from the start, so that rate() sees the first
	}
	reg.MustRegister(m.requests, m.latency, m.fallbacks, m.authFailures, m.authThrottled, m.bogusHits, m.rateLimited)
	return m
}

type statusWriter struct {
	http.ResponseWriter
	code int
}

func (w *statusWriter) WriteHeader(code int) { w.code = code; w.ResponseWriter.WriteHeader(code) }

func (m *metrics) instrument(next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		start := time.Now()
		sw := &statusWriter{ResponseWriter: w, code: http.StatusOK}
		next.ServeHTTP(sw, r)
		// The route is the pattern the mux chose (a bounded set), never the path.
		route := r.Pattern
		if _, path, ok := strings.Cut(route, " "); ok {
			route = path
		}
		if route == "" {
			route = "unmatched"
		}
		method := r.Method
		switch method {
		case http.MethodGet, http.MethodHead, http.MethodPost, http.MethodPatch, http.MethodPut, http.MethodDelete, http.MethodOptions:
		default:
			method = "other"
		}
		m.requests.WithLabelValues(method, route, strconv.Itoa(sw.code)).Inc()
		m.latency.WithLabelValues(method, route).Observe(time.Since(start).Seconds())
	})
}
