// Package opcua is the agent's OPC UA source (gopcua/opcua): it reads a server's
// nodes by polling (one batched Read per interval) or through a subscription
// (monitored items with sampling interval, queue size and deadband, created in
// batches), and turns each value into a reading, its status code into the quality.
//
// Contract: connection, session and subscription belong to one run of the loop in
// Run. When anything fails (the connection drops, a Read fails, the watchdog finds
// the session silent), the loop closes the client and connects again with bounded
// backoff: node ids given by namespace URI are resolved again and the subscription
// and its monitored items are created anew, without restarting the agent. A node
// the server refuses (unknown node id, say) is logged once and reported as bad
// quality; it does not stop its neighbours.
package opcua

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"strconv"
	"sync/atomic"
	"time"

	"github.com/gopcua/opcua"
	"github.com/gopcua/opcua/ua"
	"github.com/prometheus/client_golang/prometheus"

	"takt.dev/edge-agent/internal/source"
	"takt.dev/servicekit"
)

// Server reads one OPC UA server.
type Server struct {
	cfg     Config
	agentID string
	m       *Metrics
	log     *slog.Logger
	now     func() time.Time
	refused map[int]bool // tags whose refusal was logged
	// asserted says, per tag, whether the session has handed out a current state:
	// the first value of a state tag in a session is re-asserted at the server's
	// time, see readings.
	asserted []bool
	// skew is the server's clock minus ours, from the last server timestamp: readings
	// the agent makes up (a failed read, a lost session) are stamped by the server's
	// clock too, so that one equipment's samples share one time base.
	skew atomic.Int64
}

// serverNow is now by the server's clock, as far as the agent knows it.
func (s *Server) serverNow() time.Time { return s.now().Add(time.Duration(s.skew.Load())) }

// NewServer prepares a server source; cfg must be validated.
func NewServer(cfg Config, agentID string, m *Metrics, log *slog.Logger) *Server {
	return &Server{cfg: cfg, agentID: agentID, m: m, now: time.Now, refused: map[int]bool{},
		log: log.With("opcua_server", cfg.Name, "endpoint", cfg.Endpoint)}
}

// Run reads until ctx ends, reconnecting as needed, handing readings to emit.
func (s *Server) Run(ctx context.Context, emit func([]source.Reading)) {
	if s.cfg.SecurityPolicy == "None" {
		// Allowed (many PLCs offer nothing else), never silent.
		s.log.Warn("OPC UA without security (security_policy None): values cross the network neither signed nor encrypted; choose Basic256Sha256 or better where the server offers it")
	}
	backoff := servicekit.Backoff(time.Second, 30*time.Second)
	for ctx.Err() == nil {
		start := s.now()
		err := s.session(ctx, emit)
		if ctx.Err() != nil {
			return
		}
		s.m.connected.WithLabelValues(s.cfg.Name).Set(0)
		s.m.errors.WithLabelValues(s.cfg.Name).Inc()
		if s.now().Sub(start) > time.Minute {
			backoff.Reset() // it ran for a while: this is a new failure
		}
		s.log.Warn("OPC UA session ended; reconnecting", "err", err)
		emit(s.allBad(fmt.Errorf("not connected: %w", err)))
		if !servicekit.Wait(ctx, backoff) {
			return
		}
	}
}

func (s *Server) allBad(err error) []source.Reading {
	out := make([]source.Reading, len(s.cfg.Tags))
	now := s.serverNow()
	for i := range out {
		out[i] = source.Reading{Tag: i, TS: now, Quality: source.Bad, Err: err}
	}
	return out
}

// session connects once and reads until something fails.
func (s *Server) session(ctx context.Context, emit func([]source.Reading)) error {
	c, err := s.connect(ctx)
	if err != nil {
		return err
	}
	defer c.Close(context.Background())
	nodes, err := s.resolve(ctx, c)
	if err != nil {
		return err
	}
	s.asserted = make([]bool, len(s.cfg.Tags))
	s.m.connected.WithLabelValues(s.cfg.Name).Set(1)
	s.m.reconnects.WithLabelValues(s.cfg.Name).Inc()
	s.log.Info("OPC UA session open", "mode", s.cfg.Mode, "tags", len(nodes))
	if s.cfg.Mode == "poll" {
		return s.poll(ctx, c, nodes, emit)
	}
	return s.subscribe(ctx, c, nodes, emit)
}

func (s *Server) connect(ctx context.Context) (*opcua.Client, error) {
	dctx, cancel := context.WithTimeout(ctx, s.cfg.RequestTimeout)
	defer cancel()
	eps, err := opcua.GetEndpoints(dctx, s.cfg.Endpoint)
	if err != nil {
		return nil, fmt.Errorf("get endpoints: %w", err)
	}
	mode := ua.MessageSecurityModeFromString(s.cfg.SecurityMode)
	ep, err := opcua.SelectEndpoint(eps, s.cfg.SecurityPolicy, mode)
	if err != nil {
		return nil, fmt.Errorf("security_policy %s, security_mode %s: %w", s.cfg.SecurityPolicy, s.cfg.SecurityMode, err)
	}
	opts := []opcua.Option{
		opcua.AutoReconnect(false), // reconnecting is ours: namespaces and subscriptions are rebuilt
		opcua.RequestTimeout(s.cfg.RequestTimeout),
		opcua.SessionTimeout(max(30*time.Second, 3*s.cfg.Watchdog)),
		opcua.ApplicationName("takt-agent"),
		opcua.ApplicationURI(ApplicationURI(s.agentID)),
		opcua.SecurityPolicy(s.cfg.SecurityPolicy),
		opcua.SecurityMode(mode),
	}
	tokenType := ua.UserTokenTypeAnonymous
	needCert := s.cfg.SecurityPolicy != "None" || s.cfg.Auth == "certificate"
	if needCert {
		cert, key, err := LoadOrCreateCertificate(s.cfg.Certificate, s.cfg.PrivateKey, s.agentID)
		if err != nil {
			return nil, err
		}
		opts = append(opts, opcua.Certificate(cert), opcua.PrivateKey(key))
		if s.cfg.SecurityPolicy != "None" {
			if err := CheckTrusted(s.cfg.TrustDir, ep.ServerCertificate); err != nil {
				return nil, err
			}
			opts = append(opts, opcua.RemoteCertificate(ep.ServerCertificate))
		}
		if s.cfg.Auth == "certificate" {
			tokenType = ua.UserTokenTypeCertificate
			opts = append(opts, opcua.AuthCertificate(cert), opcua.AuthPrivateKey(key))
		}
	}
	if s.cfg.Auth == "username" {
		tokenType = ua.UserTokenTypeUserName
		opts = append(opts, opcua.AuthUsername(s.cfg.Username, s.cfg.Password))
	} else if s.cfg.Auth == "anonymous" {
		opts = append(opts, opcua.AuthAnonymous())
	}
	opts = append(opts, opcua.SecurityFromEndpoint(ep, tokenType))
	c, err := opcua.NewClient(s.cfg.Endpoint, opts...)
	if err != nil {
		return nil, err
	}
	if err := c.Connect(dctx); err != nil {
		return nil, fmt.Errorf("connect: %w", err)
	}
	return c, nil
}

// resolve turns every tag's node id into a ua.NodeID, looking namespace URIs up in
// the server's namespace array (which may change across server restarts).
func (s *Server) resolve(ctx context.Context, c *opcua.Client) ([]*ua.NodeID, error) {
	var nsArray []string
	out := make([]*ua.NodeID, len(s.cfg.Tags))
	for i, t := range s.cfg.Tags {
		n, _ := ParseNodeID(t.NodeID, t.NamespaceURI) // validated at start-up
		ns := n.Namespace
		if n.NamespaceURI != "" {
			if nsArray == nil {
				var err error
				if nsArray, err = c.NamespaceArray(ctx); err != nil {
					return nil, fmt.Errorf("read the namespace array: %w", err)
				}
			}
			idx := -1
			for k, uri := range nsArray {
				if uri == n.NamespaceURI {
					idx = k
				}
			}
			if idx < 0 {
				return nil, fmt.Errorf("tag %q: namespace_uri %q: the server has no such namespace (it has %q)", t.Name, n.NamespaceURI, nsArray)
			}
			ns = uint16(idx)
		}
		id, err := ua.ParseNodeID("ns=" + strconv.Itoa(int(ns)) + ";" + n.ID)
		if err != nil {
			return nil, fmt.Errorf("tag %q: node_id %q: %w", t.Name, t.NodeID, err)
		}
		out[i] = id
	}
	return out, nil
}

// readings turns a data value into tag i's readings. A state's source timestamp is
// when it last changed, which may be long before this session began (while the
// agent was down, nobody knew): so the first good value of a state tag in a session
// is also re-asserted at the server's timestamp, the moment the server vouched for it,
// and knowledge resumes there rather than at the next change.
func (s *Server) readings(i int, dv *ua.DataValue) []source.Reading {
	r := s.reading(i, dv)
	if s.asserted == nil || s.asserted[i] || s.cfg.Tags[i].Role != "state" || r.Quality == source.Bad {
		return []source.Reading{r}
	}
	s.asserted[i] = true
	if dv.ServerTimestamp.After(r.TS) {
		again := r
		again.TS = dv.ServerTimestamp
		return []source.Reading{r, again}
	}
	return []source.Reading{r}
}

// reading turns a data value into tag i's reading.
func (s *Server) reading(i int, dv *ua.DataValue) source.Reading {
	r := source.Reading{Tag: i, TS: s.serverNow()}
	if dv == nil {
		r.Quality, r.Err = source.Bad, errors.New("no value")
		return r
	}
	if !dv.ServerTimestamp.IsZero() {
		s.skew.Store(int64(dv.ServerTimestamp.Sub(s.now())))
	}
	ts := dv.SourceTimestamp
	if s.cfg.Timestamp == "server" || ts.IsZero() {
		ts = dv.ServerTimestamp
	}
	if !ts.IsZero() {
		r.TS = ts
	}
	switch uint32(dv.Status) >> 30 {
	case 0:
		r.Quality = source.Good
	case 1:
		r.Quality = source.Uncertain
	default:
		r.Quality, r.Err = source.Bad, dv.Status
		s.refuse(i, dv.Status)
		return r
	}
	if dv.Value == nil {
		r.Quality, r.Err = source.Bad, errors.New("no value")
		return r
	}
	v, err := valueOf(dv.Value.Value())
	if err != nil {
		r.Quality, r.Err = source.Bad, err
		s.refuse(i, err)
		return r
	}
	r.Value = v
	return r
}

func (s *Server) refuse(i int, err error) {
	if !s.refused[i] {
		s.refused[i] = true
		s.log.Error("node refused or unreadable; its samples are of bad quality", "tag", s.cfg.Tags[i].Name, "node_id", s.cfg.Tags[i].NodeID, "err", err)
	}
}

// valueOf converts an OPC UA variant value into a number or a text.
func valueOf(v any) (source.Value, error) {
	switch x := v.(type) {
	case bool:
		if x {
			return source.Value{Num: 1}, nil
		}
		return source.Value{}, nil
	case int8:
		return source.Value{Num: float64(x)}, nil
	case uint8:
		return source.Value{Num: float64(x)}, nil
	case int16:
		return source.Value{Num: float64(x)}, nil
	case uint16:
		return source.Value{Num: float64(x), Wrap: 1 << 16}, nil
	case int32:
		return source.Value{Num: float64(x)}, nil
	case uint32:
		return source.Value{Num: float64(x), Wrap: 1 << 32}, nil
	case int64:
		return source.Value{Num: float64(x)}, nil
	case uint64:
		return source.Value{Num: float64(x)}, nil
	case float32:
		f, _ := strconv.ParseFloat(strconv.FormatFloat(float64(x), 'g', -1, 32), 64)
		return source.Value{Num: f}, nil
	case float64:
		return source.Value{Num: x}, nil
	case string:
		return source.Value{Text: x, IsText: true}, nil
	case time.Time:
		return source.Value{Text: x.UTC().Format(time.RFC3339Nano), IsText: true}, nil
	case *ua.LocalizedText:
		return source.Value{Text: x.Text, IsText: true}, nil
	}
	return source.Value{}, fmt.Errorf("values of type %T are not supported", v)
}

// poll reads every node once per interval, in batches.
func (s *Server) poll(ctx context.Context, c *opcua.Client, nodes []*ua.NodeID, emit func([]source.Reading)) error {
	const batch = 1000
	tick := time.NewTicker(s.cfg.Interval)
	defer tick.Stop()
	for {
		out := make([]source.Reading, 0, len(nodes))
		for from := 0; from < len(nodes); from += batch {
			to := min(from+batch, len(nodes))
			req := &ua.ReadRequest{TimestampsToReturn: ua.TimestampsToReturnBoth}
			for _, id := range nodes[from:to] {
				req.NodesToRead = append(req.NodesToRead, &ua.ReadValueID{NodeID: id, AttributeID: ua.AttributeIDValue})
			}
			rctx, cancel := context.WithTimeout(ctx, s.cfg.RequestTimeout)
			resp, err := c.Read(rctx, req)
			cancel()
			if err != nil {
				return fmt.Errorf("read: %w", err)
			}
			for k, dv := range resp.Results {
				out = append(out, s.readings(from+k, dv)...)
			}
		}
		s.m.values.WithLabelValues(s.cfg.Name).Add(float64(len(out)))
		emit(out)
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-tick.C:
		}
	}
}

// subscribe creates one subscription with a monitored item per tag and hands out
// every change until the subscription fails or the watchdog finds the session dead.
func (s *Server) subscribe(ctx context.Context, c *opcua.Client, nodes []*ua.NodeID, emit func([]source.Reading)) error {
	notes := make(chan *opcua.PublishNotificationData, 64)
	sub, err := c.Subscribe(ctx, &opcua.SubscriptionParameters{Interval: s.cfg.Interval}, notes)
	if err != nil {
		return fmt.Errorf("create subscription: %w", err)
	}
	defer sub.Cancel(context.Background())
	const batch = 500
	for from := 0; from < len(nodes); from += batch {
		to := min(from+batch, len(nodes))
		var reqs []*ua.MonitoredItemCreateRequest
		for i := from; i < to; i++ {
			t := s.cfg.Tags[i]
			params := &ua.MonitoringParameters{
				ClientHandle:     uint32(i),
				SamplingInterval: float64(s.cfg.SamplingInterval.Milliseconds()),
				QueueSize:        s.cfg.QueueSize,
				DiscardOldest:    true,
			}
			if t.Deadband > 0 {
				dt := ua.DeadbandTypeAbsolute
				if t.DeadbandType == "percent" {
					dt = ua.DeadbandTypePercent
				}
				params.Filter = ua.NewExtensionObject(&ua.DataChangeFilter{Trigger: ua.DataChangeTriggerStatusValue,
					DeadbandType: uint32(dt), DeadbandValue: t.Deadband})
			}
			reqs = append(reqs, &ua.MonitoredItemCreateRequest{
				ItemToMonitor:       &ua.ReadValueID{NodeID: nodes[i], AttributeID: ua.AttributeIDValue, DataEncoding: &ua.QualifiedName{}},
				MonitoringMode:      ua.MonitoringModeReporting,
				RequestedParameters: params,
			})
		}
		res, err := sub.Monitor(ctx, ua.TimestampsToReturnBoth, reqs...)
		if err != nil {
			return fmt.Errorf("create monitored items: %w", err)
		}
		var bad []source.Reading
		for k, r := range res.Results {
			if r.StatusCode != ua.StatusOK {
				s.refuse(from+k, r.StatusCode)
				bad = append(bad, source.Reading{Tag: from + k, TS: s.serverNow(), Quality: source.Bad, Err: r.StatusCode})
			}
		}
		if len(bad) > 0 {
			emit(bad)
		}
	}
	watchdog := time.NewTicker(s.cfg.Watchdog)
	defer watchdog.Stop()
	heard := s.now()
	for {
		select {
		case <-ctx.Done():
			return ctx.Err()
		case n := <-notes:
			if n.Error != nil {
				return fmt.Errorf("subscription: %w", n.Error)
			}
			heard = s.now()
			dc, ok := n.Value.(*ua.DataChangeNotification)
			if !ok {
				continue
			}
			out := make([]source.Reading, 0, len(dc.MonitoredItems))
			for _, item := range dc.MonitoredItems {
				if int(item.ClientHandle) < len(s.cfg.Tags) {
					out = append(out, s.readings(int(item.ClientHandle), item.Value)...)
				}
			}
			s.m.values.WithLabelValues(s.cfg.Name).Add(float64(len(out)))
			emit(out)
		case <-watchdog.C:
			if s.now().Sub(heard) < s.cfg.Watchdog {
				continue
			}
			// Quiet values are fine; a dead session is not. Ask the server.
			rctx, cancel := context.WithTimeout(ctx, s.cfg.RequestTimeout)
			_, err := c.Read(rctx, &ua.ReadRequest{NodesToRead: []*ua.ReadValueID{{NodeID: ua.NewNumericNodeID(0, 2259), AttributeID: ua.AttributeIDValue}}})
			cancel()
			if err != nil {
				s.m.watchdog.WithLabelValues(s.cfg.Name).Inc()
				return fmt.Errorf("watchdog: nothing for %s and the server does not answer: %w", s.cfg.Watchdog, err)
			}
			heard = s.now()
		}
	}
}

// Metrics are the OPC UA source's Prometheus metrics, labelled by server.
type Metrics struct {
	values     *prometheus.CounterVec
	errors     *prometheus.CounterVec
	reconnects *prometheus.CounterVec
	watchdog   *prometheus.CounterVec
	connected  *prometheus.GaugeVec
}

// NewMetrics registers the metrics with reg (nil: not registered).
func NewMetrics(reg prometheus.Registerer) *Metrics {
	m := &Metrics{
		values: prometheus.NewCounterVec(prometheus.CounterOpts{Name: "takt_agent_opcua_values_total",
			Help: "Values read or notified."}, []string{"server"}),
		errors: prometheus.NewCounterVec(prometheus.CounterOpts{Name: "takt_agent_opcua_errors_total",
			Help: "Sessions that failed or could not be opened."}, []string{"server"}),
		reconnects: prometheus.NewCounterVec(prometheus.CounterOpts{Name: "takt_agent_opcua_sessions_total",
			Help: "Sessions opened (the first one and every reconnect)."}, []string{"server"}),
		watchdog: prometheus.NewCounterVec(prometheus.CounterOpts{Name: "takt_agent_opcua_watchdog_total",
			Help: "Sessions the watchdog found silent and dead."}, []string{"server"}),
		connected: prometheus.NewGaugeVec(prometheus.GaugeOpts{Name: "takt_agent_opcua_connected",
			Help: "1 while a session is open."}, []string{"server"}),
	}
	if reg != nil {
		reg.MustRegister(m.values, m.errors, m.reconnects, m.watchdog, m.connected)
	}
	return m
}
