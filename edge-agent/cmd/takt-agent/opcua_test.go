package main

import (
	"fmt"
	"testing"
	"time"

	"takt.dev/edge-agent/internal/plcsim"
	"takt.dev/schemas"
	"takt.dev/testkit"
)

func opcuaEquipment(endpoint, mode string) string {
	return fmt.Sprintf(`  - site: lyon
    area: packaging
    line: line-1
    code: opc-filler
    opcua:
      - name: line-opc
        endpoint: %s
        mode: %s
        interval: 100ms
        watchdog: 2s
        request_timeout: 2s
        tags:
          - {name: speed, namespace_uri: "%s", node_id: "s=filler-1.Speed", deadband: 0.01}
          - {name: state, role: state, namespace_uri: "%s", node_id: "s=filler-1.State", states: {1: {state: RUNNING}, 3: {state: STOPPED_UNPLANNED, reason: 100}}}
          - {name: count_total, role: counter, counter: total, namespace_uri: "%s", node_id: "s=filler-1.TotalCount", wrap: 4294967296}
          - {name: lot, namespace_uri: "%s", node_id: "s=filler-1.Lot"}
          - {name: missing, namespace_uri: "%s", node_id: "s=filler-1.NoSuchNode"}
`, endpoint, mode, plcsim.NamespaceURI, plcsim.NamespaceURI, plcsim.NamespaceURI, plcsim.NamespaceURI, plcsim.NamespaceURI)
}

func startOPCUA(t *testing.T, r *rig, port int) *plcsim.OPCUAServer {
	t.Helper()
	var srv *plcsim.OPCUAServer
	var err error
	for range 50 { // the port may linger a moment after a stop
		if srv, err = plcsim.ServeOPCUA(r.line, "127.0.0.1", port, 100*time.Millisecond); err == nil {
			return srv
		}
		time.Sleep(100 * time.Millisecond)
	}
	t.Fatal(err)
	return nil
}

// TestOPCUAServerRestarted: the subscription comes back on its own after the server
// restarts, and a node the server does not know is bad quality beside good ones.
func TestOPCUAServerRestarted(t *testing.T) {
	r := newRig(t, 1)
	port, _ := testkit.FreePort()
	srv := startOPCUA(t, r, port)
	r.config("", time.Second, opcuaEquipment(fmt.Sprintf("opc.tcp://127.0.0.1:%d", port), "subscribe"))
	agent := r.start()
	r.waitMetric("takt_agent_opcua_values_total", 20, 30*time.Second)
	srv.Stop()
	time.Sleep(time.Second)
	srv = startOPCUA(t, r, port)
	defer func() { srv.Stop() }()
	r.waitMetric("takt_agent_opcua_sessions_total", 2, 60*time.Second)
	before, _ := r.metric("takt_agent_opcua_values_total", "")
	r.waitMetric("takt_agent_opcua_values_total", before+20, 30*time.Second)
	agent.Stop()
	time.Sleep(500 * time.Millisecond)
	r.mu.Lock()
	defer r.mu.Unlock()
	q := r.quality["opc-filler"]
	if q[schemas.QualityGood] < 20 || q[schemas.QualityBad] == 0 {
		t.Fatalf("opc-filler samples by quality: %v; want many good (speed, state, count) and bad ones (missing node, the outage)", q)
	}
}

func TestOPCUAPolling(t *testing.T) {
	r := newRig(t, 1)
	port, _ := testkit.FreePort()
	srv := startOPCUA(t, r, port)
	defer srv.Stop()
	r.config("", time.Second, opcuaEquipment(fmt.Sprintf("opc.tcp://127.0.0.1:%d", port), "poll"))
	agent := r.start()
	r.waitMetric("takt_agent_opcua_values_total", 50, 30*time.Second) // 5 tags per 100ms poll
	agent.Stop()
	r.expectAllInOrder(r.lastSeq())
}
