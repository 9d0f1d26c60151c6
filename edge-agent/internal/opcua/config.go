package opcua

import (
	"context"
	"errors"
	"fmt"
	"net/url"
	"path/filepath"
	"strconv"
	"strings"
	"time"

	"gopkg.in/yaml.v3"

	"takt.dev/edge-agent/internal/source"
)

// Config is one OPC UA server, read through a subscription or by polling: the
// entries of an equipment's opcua list.
type Config struct {
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

// Tag is one node read from the server.
type Tag struct {
	source.Tag   `yaml:",inline"`
	NodeID       string  `yaml:"node_id"`       // ns=2;s=Line1.Speed, i=2258, or s=... with namespace_uri
	NamespaceURI string  `yaml:"namespace_uri"` // resolved to an index at every connect
	Deadband     float64 `yaml:"deadband"`      // subscribe: 0 = every change
	DeadbandType string  `yaml:"deadband_type"` // absolute (default) or percent
}

func (c *Config) SourceName() string { return c.Name }

func (c *Config) SourceTags() []source.Tag {
	return source.CommonTags(c.Tags, func(t *Tag) source.Tag { return t.Tag })
}

// Defaults fills the zero fields; the client's certificate and the trusted
// servers' live under dir (the agent's buffer.dir) unless given.
func (c *Config) Defaults(env source.Env) {
	dir := env.Dir
	if c.SecurityPolicy == "" {
		c.SecurityPolicy = "None"
	}
	if c.SecurityMode == "" {
		c.SecurityMode = "SignAndEncrypt"
		if c.SecurityPolicy == "None" {
			c.SecurityMode = "None"
		}
	}
	if c.Auth == "" {
		c.Auth = "anonymous"
	}
	if c.Mode == "" {
		c.Mode = "subscribe"
	}
	if c.Interval == 0 {
		c.Interval = time.Second
	}
	if c.SamplingInterval == 0 {
		c.SamplingInterval = c.Interval
	}
	if c.QueueSize == 0 {
		c.QueueSize = 10
	}
	if c.Timestamp == "" {
		c.Timestamp = "source"
	}
	if c.Watchdog == 0 {
		c.Watchdog = max(10*c.Interval, 10*time.Second)
	}
	if c.RequestTimeout == 0 {
		c.RequestTimeout = 10 * time.Second
	}
	if c.Certificate == "" {
		c.Certificate = filepath.Join(dir, "pki", "own", "cert.pem")
	}
	if c.PrivateKey == "" {
		c.PrivateKey = filepath.Join(dir, "pki", "own", "key.pem")
	}
	if c.TrustDir == "" {
		c.TrustDir = filepath.Join(dir, "pki", "trusted")
	}
	for k := range c.Tags {
		t := &c.Tags[k]
		t.Tag.Defaults()
		if t.DeadbandType == "" {
			t.DeadbandType = "absolute"
		}
	}
}

var (
	policies  = map[string]bool{"None": true, "Basic256Sha256": true, "Aes128_Sha256_RsaOaep": true, "Aes256_Sha256_RsaPss": true}
	secModes  = map[string]bool{"None": true, "Sign": true, "SignAndEncrypt": true}
	authModes = map[string]bool{"anonymous": true, "username": true, "certificate": true}
)

// Validate reports every fault of the server's options.
func (c *Config) Validate() []error {
	var errs []error
	where := fmt.Sprintf("opcua server %q", c.Name)
	add := func(format string, args ...any) { errs = append(errs, fmt.Errorf(where+": "+format, args...)) }
	if c.Name == "" {
		add("name: missing")
	}
	if u, err := url.Parse(c.Endpoint); err != nil || u.Scheme != "opc.tcp" || u.Host == "" {
		add("endpoint %q: want opc.tcp://host:port[/path]", c.Endpoint)
	}
	if !policies[c.SecurityPolicy] {
		add("security_policy %q: want None, Basic256Sha256, Aes128_Sha256_RsaOaep or Aes256_Sha256_RsaPss", c.SecurityPolicy)
	}
	if !secModes[c.SecurityMode] {
		add("security_mode %q: want None, Sign or SignAndEncrypt", c.SecurityMode)
	} else if (c.SecurityPolicy == "None") != (c.SecurityMode == "None") {
		add("security_mode %q with security_policy %q: None goes with None, and only with None", c.SecurityMode, c.SecurityPolicy)
	}
	if !authModes[c.Auth] {
		add("auth %q: want anonymous, username or certificate", c.Auth)
	}
	if c.Auth == "username" && c.Username == "" {
		add("username: required with auth username")
	}
	if c.Auth == "username" && c.SecurityPolicy == "None" {
		add("auth username with security_policy None: the password would cross the network unprotected; choose a security policy (Basic256Sha256, Aes128_Sha256_RsaOaep, Aes256_Sha256_RsaPss)")
	}
	if c.Mode != "subscribe" && c.Mode != "poll" {
		add("mode %q: want subscribe or poll", c.Mode)
	}
	if c.Interval < 10*time.Millisecond {
		add("interval %s: at least 10ms", c.Interval)
	}
	if c.Timestamp != "source" && c.Timestamp != "server" {
		add("timestamp %q: want source or server", c.Timestamp)
	}
	if len(c.Tags) == 0 {
		add("no tags")
	}
	for _, t := range c.Tags {
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
		for _, err := range append(terrs, t.Tag.Validate()...) {
			add("tag %q: %v", t.Name, err)
		}
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

// driver is the OPC UA source driver: the key opcua under an equipment.
type driver struct{}

func init() { source.Register(driver{}) }

func (driver) Key() string { return "opcua" }

func (driver) Decode(node *yaml.Node, path string, env source.Env) ([]source.Config, []error) {
	return source.DecodeList[Config](node, path, env)
}

func (driver) Runner(rt source.Runtime) func(context.Context, source.Config, func([]source.Reading)) {
	m := NewMetrics(rt.Registry)
	return func(ctx context.Context, c source.Config, emit func([]source.Reading)) {
		NewServer(*c.(*Config), rt.AgentID, m, rt.Log).Run(ctx, emit)
	}
}
