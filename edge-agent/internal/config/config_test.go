package config

import (
	"context"
	"fmt"
	"strings"
	"testing"

	"gopkg.in/yaml.v3"

	"takt.dev/edge-agent/internal/source"
	"takt.dev/servicekit"
)

var sprintf = fmt.Sprintf

// metrics_addr: "" disables the endpoint, as its comment says; absent, the default.
func TestMetricsAddrEmptyDisables(t *testing.T) {
	base := "agent: {id: gw, tenant: acme%s}\nmqtt: {url: 'tcp://b:1883'}\nequipment:\n  - {site: s, area: a, line: l, code: e, modbus: [{name: plc, url: 'tcp://p:502', tags: [{name: speed, address: 0}]}]}\n"
	for _, c := range []struct{ extra, want string }{{"", "127.0.0.1:9103"}, {", metrics_addr: ''", ""}, {", metrics_addr: ':9200'", ":9200"}} {
		cfg, err := Parse([]byte(sprintf(base, c.extra)))
		if err != nil {
			t.Fatal(err)
		}
		if cfg.Agent.MetricsAddr != c.want {
			t.Errorf("%q: metrics_addr %q, want %q", c.extra, cfg.Agent.MetricsAddr, c.want)
		}
	}
}

// fakeDriver is a driver that lives only in this test: registering it is all it
// takes for its key to be read under an equipment, with its own defaults and
// validation, without a line of this package changing.
type fakeDriver struct{}

type fakeConfig struct {
	Name string       `yaml:"name"`
	Rack int          `yaml:"rack"`
	Tags []source.Tag `yaml:"tags"`
}

func (c *fakeConfig) SourceName() string       { return c.Name }
func (c *fakeConfig) SourceTags() []source.Tag { return c.Tags }

func (fakeDriver) Key() string { return "s7" }

func (fakeDriver) Decode(node *yaml.Node, path string, env source.Env) ([]source.Config, []error) {
	var list []fakeConfig
	errs := servicekit.DecodeYAMLNode(node, path, &list)
	var out []source.Config
	for i := range list {
		c := &list[i]
		if c.Rack == 0 {
			c.Rack = 1 // its own default
		}
		if c.Rack > 7 {
			errs = append(errs, fmt.Errorf("s7 plc %q: rack %d: want 0 to 7", c.Name, c.Rack))
		}
		for k := range c.Tags {
			c.Tags[k].Defaults()
		}
		out = append(out, c)
	}
	return out, errs
}

func (fakeDriver) Runner(source.Runtime) func(context.Context, source.Config, func([]source.Reading)) {
	return func(context.Context, source.Config, func([]source.Reading)) {}
}

func init() { source.Register(fakeDriver{}) }

func TestADriverOwnsItsKey(t *testing.T) {
	head := "agent: {id: gw, tenant: acme}\nmqtt: {url: 'tcp://b:1883'}\nequipment:\n  - site: s\n    area: a\n    line: l\n    code: e\n"
	cfg, err := Parse([]byte(head + "    s7: [{name: cpu, tags: [{name: speed}]}]\n    modbus: [{name: plc, url: 'tcp://p:502', tags: [{name: count, role: counter, counter: total, address: 3}]}]\n"))
	if err != nil {
		t.Fatal(err)
	}
	srcs := cfg.Equipment[0].Sources
	if len(srcs) != 2 || srcs[0].Driver != "s7" || srcs[0].Config.(*fakeConfig).Rack != 1 || srcs[0].SourceTags()[0].Role != "measurement" || srcs[1].Driver != "modbus" {
		t.Fatalf("sources %+v", srcs)
	}
	// Every fault at once: the driver's own (with line and path, and from its
	// validation), a misspelt driver key, and the others.
	_, err = Parse([]byte(head + "    s7: [{name: cpu, rack: 9, slot: 2, tags: [{name: speed}]}]\n    modbuss: []\n    opcua: [{name: x, endpoint: 'opc.tcp://h:4840', tags: [{name: t, node_id: 'q=1'}]}]\n"))
	for _, want := range []string{
		"line 8: equipment[0].s7[0].slot: unknown key; known here: name, rack, tags",
		`line 9: equipment[0].modbuss: unknown key (did you mean "modbus"?)`,
		`equipment "e": s7 plc "cpu": rack 9: want 0 to 7`,
		`equipment "e": opcua server "x": tag "t": node_id "q=1"`,
	} {
		if err == nil || !strings.Contains(err.Error(), want) {
			t.Errorf("err = %v\nwant it to contain %q", err, want)
		}
	}
}

// Secrets come from the environment or files, in the agent's own options and in
// a driver's alike; an unresolved reference is named with its line and path.
func TestSecretReferences(t *testing.T) {
	t.Setenv("TAKT_TEST_OPCUA_PASSWORD", "pa$$word")
	t.Setenv("TAKT_TEST_MQTT_PASSWORD", "mqtt-secret")
	doc := "agent: {id: gw, tenant: acme}\nmqtt: {url: 'tcp://b:1883', username: gw, password: '${TAKT_TEST_MQTT_PASSWORD}'}\nequipment:\n" +
		"  - {site: s, area: a, line: l, code: e, opcua: [{name: x, endpoint: 'opc.tcp://h:4840', security_policy: Basic256Sha256, auth: username, username: takt, password: '${TAKT_TEST_OPCUA_PASSWORD}', tags: [{name: t, node_id: 'ns=2;s=T'}]}]}\n"
	cfg, err := Parse([]byte(doc))
	if err != nil {
		t.Fatal(err)
	}
	if cfg.MQTT.Password != "mqtt-secret" || cfg.Equipment[0].Sources[0].Config.(interface{ SourceName() string }).SourceName() != "x" {
		t.Fatalf("mqtt password %q", cfg.MQTT.Password)
	}
	if got := fmt.Sprintf("%+v", cfg.Equipment[0].Sources[0].Config); !strings.Contains(got, "Password:pa$$word") {
		t.Fatalf("the OPC UA password was not resolved: %s", got)
	}
	_, err = Parse([]byte(strings.Replace(doc, "TAKT_TEST_OPCUA_PASSWORD", "TAKT_TEST_UNSET", 1)))
	if err == nil || !strings.Contains(err.Error(), "line 4: equipment[0].opcua[0].password: ${TAKT_TEST_UNSET}: the environment variable is not set") {
		t.Fatalf("err = %v", err)
	}
}
