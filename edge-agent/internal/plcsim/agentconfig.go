package plcsim

import (
	"fmt"
	"strings"
	"time"
)

// AgentConfig returns a takt-agent configuration (YAML) that reads every machine of
// a line served at addrs, for the demo and tests. The caller adds the agent, mqtt
// and buffer sections' values through the arguments.
func AgentConfig(agentID, tenant, mqttURL, bufferDir string, addrs []string, names []string, interval time.Duration) string {
	var b strings.Builder
	fmt.Fprintf(&b, "agent:\n  id: %s\n  tenant: %s\n  metrics_addr: 127.0.0.1:0\nmqtt:\n  url: %s\nbuffer:\n  dir: %s\npublish:\n  linger: 200ms\nequipment:\n", agentID, tenant, mqttURL, bufferDir)
	for i, addr := range addrs {
		fmt.Fprintf(&b, `  - site: lyon
    area: packaging
    line: line-1
    code: %s
    modbus:
      - name: plc-%s
        url: tcp://%s
        interval: %s
        tags:
          - {name: state, role: state, address: 0, type: uint16, states: {1: {state: RUNNING}, 2: {state: SETUP}, 3: {state: STOPPED_UNPLANNED, reason: 100}, 4: {state: STOPPED_UNPLANNED, reason: 1}, 5: {state: IDLE, reason: 1}, 6: {state: PLANNED_DOWN}}}
          - {name: reason, address: 1, type: uint16}
          - {name: count_total, role: counter, counter: total, address: 2, type: uint16}
          - {name: count_good, role: counter, counter: good, address: 3, type: uint16}
          - {name: count_scrap, role: counter, counter: scrap, address: 4, type: uint16}
          - {name: speed, address: 10, type: float32, byte_order: ABCD}
          - {name: temperature, address: 12, type: float32, byte_order: CDAB}
          - {name: energy_kwh, address: 20, type: float64}
          - {name: lot, address: 30, type: string, length: 6}
          - {name: running, register: coil, address: 0}
`, names[i], names[i], addr, interval)
	}
	return b.String()
}
