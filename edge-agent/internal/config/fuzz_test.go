package config

import "testing"

// FuzzParse: a configuration file of any bytes is accepted or refused with an error,
// never a panic (a plant engineer's file may be anything).
func FuzzParse(f *testing.F) {
	f.Add([]byte("agent: {id: gw, tenant: acme}\nmqtt: {url: 'tcp://b:1883'}\nequipment:\n  - {site: s, area: a, line: l, code: e, modbus: [{name: plc, url: 'tcp://p:502', tags: [{name: speed, address: 0}]}]}\n"))
	f.Add([]byte("agent: {id: gw, heartbeat: often}\nequipment:\n  - opcua: [{name: p, securty_policy: x, tags: [{name: s, role: state, states: {1: {state: RUNING}}}]}]\n"))
	f.Add([]byte("a: &a [*a, *a]\nb: *a\n"))
	f.Add([]byte("\xff\xfe"))
	f.Fuzz(func(t *testing.T, data []byte) {
		cfg, err := Parse(data)
		if err == nil && cfg == nil {
			t.Fatal("no error and no configuration")
		}
	})
}
