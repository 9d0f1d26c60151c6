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
	"sort"
	"strings"
	"time"

	"gopkg.in/yaml.v3"

	_ "takt.dev/edge-agent/internal/drivers" // every source driver, registered
	"takt.dev/edge-agent/internal/source"
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
	Site string `yaml:"site"`
	Area string `yaml:"area"`
	Line string `yaml:"line"`
	Code string `yaml:"code"`
	// Drivers holds the equipment's other keys: each names a source driver
	// (modbus, opcua...) and lists its sources, which the driver decodes.
	Drivers map[string]any `yaml:",inline"`
	// Sources are the decoded sources, in the file's order.
	Sources []Source `yaml:"-"`
}

// Source is one configured source of an equipment and the driver that reads it.
type Source struct {
	Driver string // its key: modbus, opcua...
	source.Config
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
	errs := unjoin(decodeErr)
	errs = append(errs, c.decodeSources(data)...)
	errs = append(errs, unjoin(c.Validate())...)
	// Faults that have a line first, in the file's order; then the others.
	sort.SliceStable(errs, func(i, j int) bool {
		li, lj := servicekit.LineOf(errs[i]), servicekit.LineOf(errs[j])
		return li != 0 && (lj == 0 || li < lj)
	})
	if err := errors.Join(errs...); err != nil {
		return nil, err
	}
	return &c, nil
}

// decodeSources hands each equipment's driver keys (modbus, opcua...) to their
// drivers, and returns every fault; an unknown key is named with the keys that fit.
func (c *Config) decodeSources(data []byte) []error {
	var doc yaml.Node
	if yaml.Unmarshal(data, &doc) != nil || len(doc.Content) == 0 || doc.Content[0].Kind != yaml.MappingNode {
		return nil // DecodeYAML reported it
	}
	var list *yaml.Node
	root := doc.Content[0]
	for i := 0; i+1 < len(root.Content); i += 2 {
		if root.Content[i].Value == "equipment" {
			list = root.Content[i+1]
		}
	}
	if list == nil || list.Kind != yaml.SequenceNode {
		return nil
	}
	var errs []error
	env := source.Env{AgentID: c.Agent.ID, Dir: c.Buffer.Dir}
	for ei, eq := range list.Content {
		if eq.Kind != yaml.MappingNode || ei >= len(c.Equipment) {
			continue
		}
		for i := 0; i+1 < len(eq.Content); i += 2 {
			k, v := eq.Content[i], eq.Content[i+1]
			switch k.Value {
			case "site", "area", "line", "code":
				continue
			}
			path := fmt.Sprintf("equipment[%d].%s", ei, k.Value)
			d := source.Lookup(k.Value)
			if d == nil {
				errs = append(errs, unknownSourceKey(k, path))
				continue
			}
			configs, derrs := d.Decode(v, path, env)
			for _, e := range derrs {
				if servicekit.LineOf(e) == 0 {
					e = fmt.Errorf("equipment %q: %w", c.Equipment[ei].Code, e)
				}
				errs = append(errs, e)
			}
			for _, sc := range configs {
				c.Equipment[ei].Sources = append(c.Equipment[ei].Sources, Source{Driver: k.Value, Config: sc})
			}
		}
	}
	return errs
}

// unknownSourceKey names a key of an equipment that no field and no driver has.
func unknownSourceKey(k *yaml.Node, path string) error {
	fields, drivers := []string{"area", "code", "line", "site"}, source.Keys()
	msg := fmt.Sprintf("line %d: %s: unknown key", k.Line, path)
	if best := servicekit.Closest(k.Value, append(append([]string{}, fields...), drivers...)); best != "" {
		msg += fmt.Sprintf(" (did you mean %q?)", best)
	}
	return errors.New(msg + "; known here: " + strings.Join(fields, ", ") + "; source drivers: " + strings.Join(drivers, ", "))
}

func unjoin(err error) []error {
	if err == nil {
		return nil
	}
	if j, ok := err.(interface{ Unwrap() []error }); ok {
		return j.Unwrap()
	}
	return []error{err}
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
		if len(e.Sources) == 0 {
			add("%s: no sources (give one of: %s)", where, strings.Join(source.Keys(), ", "))
		}
		tags := map[string]bool{}
		for _, src := range e.Sources {
			for _, t := range src.SourceTags() {
				if tags[t.Name] {
					add("equipment %q: tag %q defined twice", e.Code, t.Name)
				}
				tags[t.Name] = true
			}
		}
	}
	return errors.Join(errs...)
}
