package server

import (
	"net"
	"net/http"
	"strconv"
	"sync"
	"time"

	"golang.org/x/time/rate"
)

// authThrottle is a token bucket per key. As the guard, it bounds how often one
// client address may present a token the database does not know: each unknown token
// costs a query on the primary, so a client guessing tokens is answered 429, without
// a query, once it has failed Burst times faster than Rate (blocked, failed). As a
// rate limit it bounds the requests of one token or one address (take). At most
// maxClients keys are tracked; the least recently seen are forgotten first.
type authThrottle struct {
	rate  rate.Limit
	burst int

	mu      sync.Mutex
	clients map[string]*throttled
}

type throttled struct {
	lim  *rate.Limiter
	last time.Time
}

const maxClients = 10_000

func newAuthThrottle(perSecond float64, burst int) *authThrottle {
	return &authThrottle{rate: rate.Limit(perSecond), burst: burst, clients: map[string]*throttled{}}
}

func clientOf(r *http.Request) string {
	host, _, err := net.SplitHostPort(r.RemoteAddr)
	if err != nil {
		return r.RemoteAddr
	}
	return host
}

// blocked reports whether the client has no failure left, and when to retry.
func (a *authThrottle) blocked(client string, now time.Time) (bool, time.Duration) {
	a.mu.Lock()
	defer a.mu.Unlock()
	c, ok := a.clients[client]
	if !ok {
		return false, 0
	}
	tokens := c.lim.TokensAt(now)
	if tokens >= 1 {
		return false, 0
	}
	return true, time.Duration((1 - tokens) / float64(a.rate) * float64(time.Second))
}

// take spends one request of key's budget when there is one left, else it reports
// how long until there is.
func (a *authThrottle) take(key string, now time.Time) (bool, time.Duration) {
	a.mu.Lock()
	defer a.mu.Unlock()
	c := a.bucket(key, now)
	if c.lim.AllowN(now, 1) {
		return true, 0
	}
	return false, time.Duration((1 - c.lim.TokensAt(now)) / float64(a.rate) * float64(time.Second))
}

// failed counts one failed authentication of the client.
func (a *authThrottle) failed(client string, now time.Time) {
	a.mu.Lock()
	defer a.mu.Unlock()
	a.bucket(client, now).lim.AllowN(now, 1)
}

// bucket is key's bucket, made when new (forgetting the least recently seen key
// when maxClients are tracked), marked as seen now. The caller holds mu.
func (a *authThrottle) bucket(key string, now time.Time) *throttled {
	c, ok := a.clients[key]
	if !ok {
		if len(a.clients) >= maxClients {
			a.forgetOldest()
		}
		c = &throttled{lim: rate.NewLimiter(a.rate, a.burst)}
		a.clients[key] = c
	}
	c.last = now
	return c
}

func (a *authThrottle) forgetOldest() {
	var oldest string
	var at time.Time
	for k, c := range a.clients {
		if oldest == "" || c.last.Before(at) {
			oldest, at = k, c.last
		}
	}
	delete(a.clients, oldest)
}

func retryAfter(d time.Duration) string {
	return strconv.Itoa(max(1, int(d.Round(time.Second)/time.Second)))
}
