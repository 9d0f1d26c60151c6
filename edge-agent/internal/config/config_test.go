package config

import (
	"fmt"
	"testing"
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
