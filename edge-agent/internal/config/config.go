// Package config is the agent's configuration file: one YAML file per gateway with
// the broker, the disk buffer, and the equipment it serves with their sources and
// tags. Load validates the whole file and reports every problem, each naming the
// equipment, source, tag and value at fault, before anything connects.
package config

import (
	"errors"
	"fmt"
	"net/url"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"time"

	"gopkg.in/yaml.v3"

	"takt.dev/schemas"
	"takt.dev/servicekit"
)

// Config is the whole agent configuration.
type Config struct {
	Agent     Agent       `yaml:"agent"`
	MQTT      MQTT        `yaml:"mqtt"`
	Buffer    Buffer      `yaml:"buffer"`
	Publish   Publish     `yaml:"publish"`
	Equipment []Equipment `yaml:"equipment"`
}

// Agent names the gateway.
type Agent struct {
	ID          string `yaml:"id"`           // unique per agent: (agent, seq) identifies a sample
	Tenant      string `yaml:"tenant"`       // the tenant all equipment belongs to
	MetricsAddr string `yaml:"metrics_addr"` // Prometheus /metrics; default 127.0.0.1:9103, "" to disable
	// Heartbeat is how often the agent records how far it got (lifeline.json in the
	// buffer directory), so that after a crash or power loss the next run says where
	// knowledge of the machines ended; default 5s, 10ms to 1m.
	Heartbeat time.Duration `yaml:"heartbeat"`
}

// MQTT is the broker connection.
type MQTT struct {
	URL       string        `yaml:"url"`       // tcp://host:1883 or ssl://host:8883
	ClientID  string        `yaml:"client_id"` // default takt-agent-<agent id>
	Username  string        `yaml:"username"`
	Password  string        `yaml:"password"`
	CAFile    string        `yaml:"ca_file"`   // PEM CA bundle to check the broker's certificate
	CertFile  string        `yaml:"cert_file"` // PEM client certificate (mutual TLS)
	KeyFile   string        `yaml:"key_file"`
	KeepAlive time.Duration `yaml:"keepalive"` // default 30s
}

// Buffer is the disk buffer every envelope is written to before it is published.
type Buffer struct {
	Dir          string `yaml:"dir"`           // default /var/lib/takt-agent
	MaxBytes     int64  `yaml:"max_bytes"`     // default 256 MiB; at least 2 segments
	SegmentBytes int64  `yaml:"segment_bytes"` // default 8 MiB
	WhenFull     string `yaml:"when_full"`     // drop_oldest (default) or pause
	// ReplayWindow keeps acknowledged envelopes this long, to send again after a
	// reconnect in case the broker crashed and lost them; default 2m, 0s disables.
	// Set it above the broker's autosave_interval.
	ReplayWindow time.Duration `yaml:"replay_window"`
	// SyncEvery fsyncs the buffer at most this often; default 1s; 0s: only when a
	// segment is full and at shutdown. What power loss can take is what was
	// appended since the last fsync.
	SyncEvery time.Duration `yaml:"sync_every"`
}

// Publish shapes envelopes and their flow to the broker.
type Publish struct {
	BatchSize   int           `yaml:"batch_size"`   // samples per envelope, at most; default 500
	Linger      time.Duration `yaml:"linger"`       // an envelope waits at most this long to fill; default 1s
	MaxInflight int           `yaml:"max_inflight"` // envelopes published and not yet acknowledged; default 64
}

// Equipment is one machine and the sources its tags come from.
type Equipment struct {
	Site   string         `yaml:"site"`
	Area   string         `yaml:"area"`
	Line   string         `yaml:"line"`
	Code   string         `yaml:"code"`
	Modbus []ModbusDevice `yaml:"modbus"`
	OPCUA  []OPCUAServer  `yaml:"opcua"`
}

// OPCUAServer is one OPC UA server, read by polling or through a subscription.
type OPCUAServer struct {
	Name             string        `yaml:"name"`
	Endpoint         string        `yaml:"endpoint"`          // opc.tcp://host:4840/path
	SecurityPolicy   string        `yaml:"security_policy"`   // None (default), Basic256Sha256, Aes128_Sha256_RsaOaep, Aes256_Sha256_RsaPss
	SecurityMode     string        `yaml:"security_mode"`     // None, Sign, SignAndEncrypt; default None with policy None, else SignAndEncrypt
	Auth             string        `yaml:"auth"`              // anonymous (default), username, certificate
	Username         string        `yaml:"username"`          // auth username
	Password         string        `yaml:"password"`          // auth username
	Certificate      string        `yaml:"certificate"`       // client certificate (PEM); made and kept here on first start when missing
	PrivateKey       string        `yaml:"private_key"`       // its RSA key (PEM)
	TrustDir         string        `yaml:"trust_dir"`         // server certificates trusted (DER or PEM files); rejected ones are saved beside it
	Mode             string        `yaml:"mode"`              // subscribe (default) or poll
	Interval         time.Duration `yaml:"interval"`          // poll period, or the subscription's publishing interval; default 1s
	SamplingInterval time.Duration `yaml:"sampling_interval"` // subscribe: per item; default = interval
	QueueSize        uint32        `yaml:"queue_size"`        // subscribe: per item; default 10
	Timestamp        string        `yaml:"timestamp"`         // source (default) or server
	Watchdog         time.Duration `yaml:"watchdog"`          // reconnect when nothing arrives for this long; default 10 × interval, at least 10s
	RequestTimeout   time.Duration `yaml:"request_timeout"`   // default 10s
	Tags             []Tag         `yaml:"tags"`
}

// ModbusDevice is one Modbus server (PLC, gateway, meter) polled on its own loop.
type ModbusDevice struct {
	Name     string        `yaml:"name"`
	URL      string        `yaml:"url"`      // tcp://host:502, rtuovertcp://host:4001, rtu:///dev/ttyUSB0
	UnitID   uint8         `yaml:"unit_id"`  // default 1
	Interval time.Duration `yaml:"interval"` // default 1s
	Timeout  time.Duration `yaml:"timeout"`  // per request; default 2s
	GapFill  int           `yaml:"gap_fill"` // unused registers a merged request may span; default 10
	Baud     uint          `yaml:"baud"`     // rtu only; default 19200
	Parity   string        `yaml:"parity"`   // rtu only: none, even (default), odd
	Tags     []Tag         `yaml:"tags"`
}

// Tag is one value read from a source.
type Tag struct {
	Name      string  `yaml:"name"`
	Role      string  `yaml:"role"`       // measurement (default), state, counter, product (the product code running: a text, or a recipe number)
	Register  string  `yaml:"register"`   // holding (default), input, coil, discrete
	Address   *int    `yaml:"address"`    // 0-based protocol address, 0..65535
	Type      string  `yaml:"type"`       // bool, int16, uint16 (default), int32, uint32, int64, uint64, float32, float64, string
	ByteOrder string  `yaml:"byte_order"` // ABCD (default), DCBA, BADC, CDAB
	Length    int     `yaml:"length"`     // string only: registers
	Scale     float64 `yaml:"scale"`      // value = raw * scale + offset; default 1
	Offset    float64 `yaml:"offset"`

	NodeID       string  `yaml:"node_id"`       // OPC UA: ns=2;s=Line1.Speed, i=2258, or s=... with namespace_uri
	NamespaceURI string  `yaml:"namespace_uri"` // OPC UA: resolved to an index at every connect
	Deadband     float64 `yaml:"deadband"`      // OPC UA subscribe: 0 = every change
	DeadbandType string  `yaml:"deadband_type"` // absolute (default) or percent

	Counter string                `yaml:"counter"` // counter only: total, good, scrap
	Wrap    uint64                `yaml:"wrap"`    // counter only: wraps to 0 here; default from type (uint16: 65536)
	States  map[int64]StateOfCode `yaml:"states"`  // state only: PLC code → category and reason
}

// StateOfCode is what one PLC state code means.
type StateOfCode struct {
	State  string `yaml:"state"`  // RUNNING, SETUP, STOPPED_UNPLANNED, IDLE, PLANNED_DOWN, NOT_SCHEDULED, UNKNOWN
	Reason uint32 `yaml:"reason"` // reason code within the category
}

// Load reads, defaults and validates the file.
func Load(path string) (*Config, error) {
	data, err := os.ReadFile(path)
	if err != nil {
		return nil, err
	}
	return Parse(data)
}

// Parse decodes YAML, fills defaults and validates, and reports every fault of the
// file at once: unknown keys and values of the wrong kind with their line and path
// (mqtt.securty_policy, with the keys that would fit), then what validation finds.
func Parse(data []byte) (*Config, error) {
	var c Config
	decodeErr := servicekit.DecodeYAML(data, &c)
	// metrics_addr: "" disables the metrics endpoint; absent, it takes the default.
	// replay_window and sync_every: 0s is a choice; absent, they take the default.
	var probe struct {
		Agent struct {
			MetricsAddr *string `yaml:"metrics_addr"`
		} `yaml:"agent"`
		Buffer struct {
			ReplayWindow *string `yaml:"replay_window"`
			SyncEvery    *string `yaml:"sync_every"`
		} `yaml:"buffer"`
	}
	_ = yaml.Unmarshal(data, &probe)
	c.defaults()
	if p := probe.Agent.MetricsAddr; p != nil && *p == "" {
		c.Agent.MetricsAddr = ""
	}
	if probe.Buffer.ReplayWindow == nil {
		c.Buffer.ReplayWindow = 2 * time.Minute
	}
	if probe.Buffer.SyncEvery == nil {
		c.Buffer.SyncEvery = time.Second
	}
	if err := errors.Join(decodeErr, c.Validate()); err != nil {
		return nil, err
	}
	return &c, nil
}

func (c *Config) defaults() {
	if c.Agent.MetricsAddr == "" {
		c.Agent.MetricsAddr = "127.0.0.1:9103"
	}
	if c.Agent.Heartbeat == 0 {
		c.Agent.Heartbeat = 5 * time.Second
	}
	if c.MQTT.ClientID == "" && c.Agent.ID != "" {
		c.MQTT.ClientID = "takt-agent-" + c.Agent.ID
	}
	if c.MQTT.KeepAlive == 0 {
		c.MQTT.KeepAlive = 30 * time.Second
	}
	if c.Buffer.Dir == "" {
		c.Buffer.Dir = "/var/lib/takt-agent"
	}
	if c.Buffer.MaxBytes == 0 {
		c.Buffer.MaxBytes = 256 << 20
	}
	if c.Buffer.SegmentBytes == 0 {
		c.Buffer.SegmentBytes = min(8<<20, c.Buffer.MaxBytes/4)
	}
	if c.Buffer.WhenFull == "" {
		c.Buffer.WhenFull = "drop_oldest"
	}
	if c.Publish.BatchSize == 0 {
		c.Publish.BatchSize = 500
	}
	if c.Publish.Linger == 0 {
		c.Publish.Linger = time.Second
	}
	if c.Publish.MaxInflight == 0 {
		c.Publish.MaxInflight = 64
	}
	for i := range c.Equipment {
		for j := range c.Equipment[i].OPCUA {
			o := &c.Equipment[i].OPCUA[j]
			if o.SecurityPolicy == "" {
				o.SecurityPolicy = "None"
			}
			if o.SecurityMode == "" {
				o.SecurityMode = "SignAndEncrypt"
				if o.SecurityPolicy == "None" {
					o.SecurityMode = "None"
				}
			}
			if o.Auth == "" {
				o.Auth = "anonymous"
			}
			if o.Mode == "" {
				o.Mode = "subscribe"
			}
			if o.Interval == 0 {
				o.Interval = time.Second
			}
			if o.SamplingInterval == 0 {
				o.SamplingInterval = o.Interval
			}
			if o.QueueSize == 0 {
				o.QueueSize = 10
			}
			if o.Timestamp == "" {
				o.Timestamp = "source"
			}
			if o.Watchdog == 0 {
				o.Watchdog = max(10*o.Interval, 10*time.Second)
			}
			if o.RequestTimeout == 0 {
				o.RequestTimeout = 10 * time.Second
			}
			if o.Certificate == "" {
				o.Certificate = filepath.Join(c.Buffer.Dir, "pki", "own", "cert.pem")
			}
			if o.PrivateKey == "" {
				o.PrivateKey = filepath.Join(c.Buffer.Dir, "pki", "own", "key.pem")
			}
			if o.TrustDir == "" {
				o.TrustDir = filepath.Join(c.Buffer.Dir, "pki", "trusted")
			}
			for k := range o.Tags {
				t := &o.Tags[k]
				if t.Role == "" {
					t.Role = "measurement"
				}
				if t.Scale == 0 {
					t.Scale = 1
				}
				if t.DeadbandType == "" {
					t.DeadbandType = "absolute"
				}
			}
		}
		for j := range c.Equipment[i].Modbus {
			d := &c.Equipment[i].Modbus[j]
			if d.UnitID == 0 {
				d.UnitID = 1
			}
			if d.Interval == 0 {
				d.Interval = time.Second
			}
			if d.Timeout == 0 {
				d.Timeout = 2 * time.Second
			}
			if d.GapFill == 0 {
				d.GapFill = 10
			}
			if d.Baud == 0 {
				d.Baud = 19200
			}
			if d.Parity == "" {
				d.Parity = "even"
			}
			for k := range d.Tags {
				t := &d.Tags[k]
				if t.Role == "" {
					t.Role = "measurement"
				}
				if t.Register == "" {
					t.Register = "holding"
				}
				if t.Type == "" {
					t.Type = "uint16"
					if t.Register == "coil" || t.Register == "discrete" {
						t.Type = "bool"
					}
				}
				if t.ByteOrder == "" {
					t.ByteOrder = "ABCD"
				}
				if t.Scale == 0 {
					t.Scale = 1
				}
				if t.Role == "counter" && t.Wrap == 0 {
					t.Wrap = DefaultWrap(t.Type)
				}
			}
		}
	}
}

// DefaultWrap is the value an unsigned counter of type typ wraps to 0 at, or 0 when
// the type has none worth naming.
func DefaultWrap(typ string) uint64 {
	switch typ {
	case "uint16":
		return 1 << 16
	case "uint32":
		return 1 << 32
	}
	return 0
}

// Validate reports every problem in the file, one per line.
func (c *Config) Validate() error {
	var errs []error
	add := func(format string, args ...any) { errs = append(errs, fmt.Errorf(format, args...)) }
	if err := schemas.CheckName(c.Agent.ID); err != nil {
		add("agent.id %q: %v", c.Agent.ID, err)
	}
	if err := schemas.CheckName(c.Agent.Tenant); err != nil {
		add("agent.tenant %q: %v", c.Agent.Tenant, err)
	}
	if c.Agent.Heartbeat < 10*time.Millisecond || c.Agent.Heartbeat > time.Minute {
		add("agent.heartbeat %s: want 10ms to 1m", c.Agent.Heartbeat)
	}
	if u, err := url.Parse(c.MQTT.URL); err != nil || (u.Scheme != "tcp" && u.Scheme != "ssl" && u.Scheme != "tls") || u.Host == "" {
		add("mqtt.url %q: want tcp://host:port or ssl://host:port", c.MQTT.URL)
	}
	if (c.MQTT.CertFile == "") != (c.MQTT.KeyFile == "") {
		add("mqtt.cert_file and mqtt.key_file: give both or neither")
	}
	for _, f := range []struct{ name, path string }{{"mqtt.ca_file", c.MQTT.CAFile}, {"mqtt.cert_file", c.MQTT.CertFile}, {"mqtt.key_file", c.MQTT.KeyFile}} {
		if f.path != "" {
			if _, err := os.Stat(f.path); err != nil {
				add("%s %q: %v", f.name, f.path, err)
			}
		}
	}
	if c.Buffer.SegmentBytes < 64<<10 {
		add("buffer.segment_bytes %d: at least 65536", c.Buffer.SegmentBytes)
	}
	if c.Buffer.MaxBytes < 2*c.Buffer.SegmentBytes {
		add("buffer.max_bytes %d: at least two segments (2 × buffer.segment_bytes = %d)", c.Buffer.MaxBytes, 2*c.Buffer.SegmentBytes)
	}
	if c.Buffer.ReplayWindow < 0 || c.Buffer.ReplayWindow > 24*time.Hour {
		add("buffer.replay_window %s: want 0s (off) to 24h", c.Buffer.ReplayWindow)
	}
	if c.Buffer.SyncEvery < 0 || c.Buffer.SyncEvery > time.Hour {
		add("buffer.sync_every %s: want 0s (on rotation only) to 1h", c.Buffer.SyncEvery)
	}
	if c.Buffer.WhenFull != "drop_oldest" && c.Buffer.WhenFull != "pause" {
		add("buffer.when_full %q: want drop_oldest or pause", c.Buffer.WhenFull)
	}
	if c.Publish.BatchSize < 1 || c.Publish.BatchSize > schemas.DefaultLimits.MaxSamples {
		add("publish.batch_size %d: want 1 to %d", c.Publish.BatchSize, schemas.DefaultLimits.MaxSamples)
	}
	if c.Publish.Linger < 0 {
		add("publish.linger %s: must not be negative", c.Publish.Linger)
	}
	if c.Publish.MaxInflight < 1 || c.Publish.MaxInflight > 65535 {
		add("publish.max_inflight %d: want 1 to 65535", c.Publish.MaxInflight)
	}
	if len(c.Equipment) == 0 {
		add("equipment: none configured")
	}
	codes := map[string]bool{}
	for i, e := range c.Equipment {
		where := fmt.Sprintf("equipment[%d] %q", i, e.Code)
		for _, l := range []struct{ field, v string }{{"site", e.Site}, {"area", e.Area}, {"line", e.Line}, {"code", e.Code}} {
			if err := schemas.CheckName(l.v); err != nil {
				add("%s: %s %q: %v", where, l.field, l.v, err)
			}
		}
		if codes[e.Code] {
			add("%s: code used twice", where)
		}
		codes[e.Code] = true
		if len(e.Modbus)+len(e.OPCUA) == 0 {
			add("%s: no sources", where)
		}
		tags := map[string]bool{}
		var all []Tag
		for _, d := range e.Modbus {
			for _, err := range d.validate() {
				add("equipment %q: %v", e.Code, err)
			}
			all = append(all, d.Tags...)
		}
		for _, o := range e.OPCUA {
			for _, err := range o.validate() {
				add("equipment %q: %v", e.Code, err)
			}
			all = append(all, o.Tags...)
		}
		for _, t := range all {
			if tags[t.Name] {
				add("equipment %q: tag %q defined twice", e.Code, t.Name)
			}
			tags[t.Name] = true
		}
	}
	return errors.Join(errs...)
}

// RegisterCount is how many 16-bit registers a type takes (bits take 1 "register").
func RegisterCount(typ string, length int) int {
	switch typ {
	case "bool", "int16", "uint16":
		return 1
	case "int32", "uint32", "float32":
		return 2
	case "int64", "uint64", "float64":
		return 4
	case "string":
		return length
	}
	return 0
}

var registers = map[string]bool{"holding": true, "input": true, "coil": true, "discrete": true}

func (d ModbusDevice) validate() []error {
	var errs []error
	where := fmt.Sprintf("modbus device %q", d.Name)
	add := func(format string, args ...any) { errs = append(errs, fmt.Errorf(where+": "+format, args...)) }
	if d.Name == "" {
		add("name: missing")
	}
	u, err := url.Parse(d.URL)
	switch {
	case err != nil:
		add("url %q: %v", d.URL, err)
	case u.Scheme == "tcp" || u.Scheme == "rtuovertcp":
		if u.Host == "" || u.Port() == "" {
			add("url %q: want %s://host:port", d.URL, u.Scheme)
		}
	case u.Scheme == "rtu":
		if u.Path == "" {
			add("url %q: want rtu:///dev/ttyUSB0", d.URL)
		}
		if d.Parity != "none" && d.Parity != "even" && d.Parity != "odd" {
			add("parity %q: want none, even or odd", d.Parity)
		}
	default:
		add("url %q: scheme must be tcp, rtuovertcp or rtu", d.URL)
	}
	if d.Interval < 10*time.Millisecond {
		add("interval %s: at least 10ms", d.Interval)
	}
	if d.Timeout <= 0 || d.Timeout > time.Minute {
		add("timeout %s: want more than 0 and at most 1m", d.Timeout)
	}
	if d.GapFill < 0 || d.GapFill > 124 {
		add("gap_fill %d: want 0 to 124", d.GapFill)
	}
	if d.UnitID > 247 {
		add("unit_id %d: want 1 to 247 (0 is broadcast)", d.UnitID)
	}
	if len(d.Tags) == 0 {
		add("no tags")
	}
	for _, t := range d.Tags {
		for _, err := range append(t.validateModbus(), t.validateRole()...) {
			add("tag %q: %v", t.Name, err)
		}
	}
	return errs
}

var (
	policies  = map[string]bool{"None": true, "Basic256Sha256": true, "Aes128_Sha256_RsaOaep": true, "Aes256_Sha256_RsaPss": true}
	secModes  = map[string]bool{"None": true, "Sign": true, "SignAndEncrypt": true}
	authModes = map[string]bool{"anonymous": true, "username": true, "certificate": true}
)

func (o OPCUAServer) validate() []error {
	var errs []error
	where := fmt.Sprintf("opcua server %q", o.Name)
	add := func(format string, args ...any) { errs = append(errs, fmt.Errorf(where+": "+format, args...)) }
	if o.Name == "" {
		add("name: missing")
	}
	if u, err := url.Parse(o.Endpoint); err != nil || u.Scheme != "opc.tcp" || u.Host == "" {
		add("endpoint %q: want opc.tcp://host:port[/path]", o.Endpoint)
	}
	if !policies[o.SecurityPolicy] {
		add("security_policy %q: want None, Basic256Sha256, Aes128_Sha256_RsaOaep or Aes256_Sha256_RsaPss", o.SecurityPolicy)
	}
	if !secModes[o.SecurityMode] {
		add("security_mode %q: want None, Sign or SignAndEncrypt", o.SecurityMode)
	} else if (o.SecurityPolicy == "None") != (o.SecurityMode == "None") {
		add("security_mode %q with security_policy %q: None goes with None, and only with None", o.SecurityMode, o.SecurityPolicy)
	}
	if !authModes[o.Auth] {
		add("auth %q: want anonymous, username or certificate", o.Auth)
	}
	if o.Auth == "username" && o.Username == "" {
		add("username: required with auth username")
	}
	if o.Mode != "subscribe" && o.Mode != "poll" {
		add("mode %q: want subscribe or poll", o.Mode)
	}
	if o.Interval < 10*time.Millisecond {
		add("interval %s: at least 10ms", o.Interval)
	}
	if o.Timestamp != "source" && o.Timestamp != "server" {
		add("timestamp %q: want source or server", o.Timestamp)
	}
	if len(o.Tags) == 0 {
		add("no tags")
	}
	for _, t := range o.Tags {
		var terrs []error
		if _, err := ParseNodeID(t.NodeID, t.NamespaceURI); err != nil {
			terrs = append(terrs, err)
		}
		if t.DeadbandType != "absolute" && t.DeadbandType != "percent" {
			terrs = append(terrs, fmt.Errorf("deadband_type %q: want absolute or percent", t.DeadbandType))
		}
		if t.Deadband < 0 || (t.DeadbandType == "percent" && t.Deadband > 100) {
			terrs = append(terrs, fmt.Errorf("deadband %v: want 0 or more (at most 100 for percent)", t.Deadband))
		}
		for _, err := range append(terrs, t.validateRole()...) {
			add("tag %q: %v", t.Name, err)
		}
	}
	return errs
}

func (t Tag) validateModbus() []error {
	var errs []error
	add := func(format string, args ...any) { errs = append(errs, fmt.Errorf(format, args...)) }
	if !registers[t.Register] {
		add("register %q: want holding, input, coil or discrete", t.Register)
	}
	n := RegisterCount(t.Type, t.Length)
	switch {
	case t.Type == "string" && (t.Length < 1 || t.Length > 123):
		add("length %d: a string takes 1 to 123 registers", t.Length)
	case n == 0:
		add("type %q: unknown (want bool, int16, uint16, int32, uint32, int64, uint64, float32, float64 or string)", t.Type)
	case (t.Register == "coil" || t.Register == "discrete") && t.Type != "bool":
		add("type %q: a %s holds one bit; use type bool", t.Type, t.Register)
	}
	if t.Address == nil {
		add("address: missing")
	} else if *t.Address < 0 || *t.Address+max(n, 1)-1 > 65535 {
		add("address %d: want 0 to %d for a %s", *t.Address, 65535-max(n, 1)+1, t.Type)
	}
	switch strings.ToUpper(t.ByteOrder) {
	case "ABCD", "DCBA", "BADC", "CDAB":
	default:
		add("byte_order %q: want ABCD, DCBA, BADC or CDAB", t.ByteOrder)
	}
	if t.Type == "string" && t.Role != "measurement" && t.Role != "product" {
		add("type string: only a measurement or a product can be text")
	}
	if (t.Role == "state" || t.Role == "counter" || t.Role == "product") && (t.Type == "float32" || t.Type == "float64") {
		add("type %q: a %s must be an integer type", t.Type, t.Role)
	}
	return errs
}

// validateRole checks what a tag's role needs, whatever its source.
func (t Tag) validateRole() []error {
	var errs []error
	add := func(format string, args ...any) { errs = append(errs, fmt.Errorf(format, args...)) }
	if t.Name == "" {
		add("name: missing")
	}
	switch t.Role {
	case "measurement":
		if t.Counter != "" || t.States != nil {
			add("role measurement: counter and states are for counter and state tags")
		}
	case "state":
		if len(t.States) == 0 {
			add("states: a state tag maps PLC codes to states; none given")
		}
		for code, s := range t.States {
			if _, err := schemas.ParseStateCategory(s.State); err != nil {
				add("states[%d]: %v", code, err)
			}
		}
	case "counter":
		if _, err := schemas.ParseCounterKind(t.Counter); err != nil {
			add("counter: %v", err)
		}
		if t.Scale != 1 || t.Offset != 0 {
			add("scale/offset: a counter counts parts; scale and offset do not apply")
		}
	case "product":
		if t.Counter != "" || t.States != nil || t.Scale != 1 || t.Offset != 0 {
			add("role product: names the product running (a text, or a recipe number); counter, states, scale and offset do not apply")
		}
	default:
		add("role %q: want measurement, state, counter or product", t.Role)
	}
	return errs
}

// NodeID is a parsed OPC UA node id: the namespace (by index, or by URI to resolve
// at connect) and the identifier part ("s=...", "i=...", "g=...", "b=...").
type NodeID struct {
	NamespaceURI string
	Namespace    uint16
	ID           string // as in the node id string, without the ns= part
}

// ParseNodeID reads node_id, with namespace_uri when given (then node_id must not
// name a namespace index).
func ParseNodeID(nodeID, namespaceURI string) (NodeID, error) {
	if nodeID == "" {
		return NodeID{}, errors.New("node_id: missing")
	}
	n := NodeID{NamespaceURI: namespaceURI, ID: nodeID}
	if rest, ok := strings.CutPrefix(nodeID, "ns="); ok {
		if namespaceURI != "" {
			return NodeID{}, fmt.Errorf("node_id %q: give the namespace by ns= or by namespace_uri, not both", nodeID)
		}
		idx, id, ok := strings.Cut(rest, ";")
		v, err := strconv.ParseUint(idx, 10, 16)
		if !ok || err != nil {
			return NodeID{}, fmt.Errorf("node_id %q: want ns=<index>;<s|i|g|b>=<id>", nodeID)
		}
		n.Namespace, n.ID = uint16(v), id
	}
	if len(n.ID) < 3 || n.ID[1] != '=' || !strings.ContainsRune("sigb", rune(n.ID[0])) {
		return NodeID{}, fmt.Errorf("node_id %q: the identifier must be s=..., i=..., g=... or b=...", nodeID)
	}
	if n.ID[0] == 'i' {
		if _, err := strconv.ParseUint(n.ID[2:], 10, 32); err != nil {
			return NodeID{}, fmt.Errorf("node_id %q: i= takes a number up to 4294967295", nodeID)
		}
	}
	return n, nil
}
