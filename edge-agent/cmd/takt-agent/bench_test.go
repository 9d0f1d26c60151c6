package main

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"takt.dev/edge-agent/internal/plcsim"
	"takt.dev/testkit"
)

// procStats reads a process's CPU time (user+system) and peak resident memory.
func procStats(pid int) (cpu time.Duration, peakRSSKiB int, err error) {
	stat, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		return 0, 0, err
	}
	f := strings.Fields(string(stat[strings.LastIndexByte(string(stat), ')')+2:]))
	ut, _ := strconv.ParseInt(f[11], 10, 64)       // utime, field 14
	st, _ := strconv.ParseInt(f[12], 10, 64)       // stime, field 15
	cpu = time.Duration(ut+st) * time.Second / 100 // USER_HZ is 100 on Linux
	status, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", pid))
	if err != nil {
		return 0, 0, err
	}
	for _, line := range strings.Split(string(status), "\n") {
		if rest, ok := strings.CutPrefix(line, "VmHWM:"); ok {
			peakRSSKiB, _ = strconv.Atoi(strings.Fields(rest)[0])
		}
	}
	return cpu, peakRSSKiB, nil
}

// Sizes of the two ceiling runs. Each offers several times what one agent takes on
// this machine, so that what it reads is its ceiling, not the offer.
const (
	benchModbusPLCs     = 12                    // Modbus TCP servers, one connection each
	benchModbusTags     = 1000                  // uint16 tags per PLC: 8 requests of 125 registers
	benchModbusInterval = 10 * time.Millisecond // the shortest interval the agent accepts
	benchOPCUAMachines  = 1200                  // × 9 variables: 10,800 monitored items
	benchOPCUAPerServer = 100                   // machines per OPC UA server
	benchOPCUAInterval  = 100 * time.Millisecond
	benchWarmUp         = 3 * time.Second
	benchWindow         = 10 * time.Second
)

var benchAgent struct {
	done bool
	r    map[string]float64
}

// BenchmarkAgent measures takt-agent over 10 s after a warm-up per source, with the
// agent as a child process (built as the test binary is: run without -race)
// publishing to a private Mosquitto:
//
//   - Modbus: 12 simulated PLCs of 1,000 uint16 tags, each polled every 10 ms
//     (1.2 million tags/s offered): tags read per second, the agent's CPU in cores,
//     tags per second per core of agent CPU, its peak RSS.
//   - OPC UA, subscribe mode: 12 servers of 100 machines × 9 variables (10,800
//     monitored items) notifying every value every 100 ms, one subscription per
//     server publishing every 100 ms (108,000 values/s offered): values received
//     per second, the agent's CPU, values per second per core, peak RSS. This is
//     the most the simulators offer on two cores, and the agent takes nearly all of
//     it: not its ceiling, so the per-core figure is the one that says what it can
//     take.
//
// The Modbus run is a ceiling (the agent reads about half of what is offered). The
// simulators run in the benchmark's own process on the same two cores, so the
// per-core figures are the ones to compare across machines. A CPU profile of the
// agent during each run is summarised on stderr.
func BenchmarkAgent(b *testing.B) {
	if !benchAgent.done {
		benchAgent.r = map[string]float64{}
		measureModbus(b, benchAgent.r)
		measureOPCUA(b, benchAgent.r)
		benchAgent.done = true
	}
	for b.Loop() {
	}
	for _, name := range []string{
		"agent_modbus_offered_tags_per_s=tags/s", "agent_modbus_tags_per_s=tags/s", "agent_modbus_cpu_cores=cores",
		"agent_modbus_tags_per_s_per_core=tags/s", "agent_modbus_peak_rss_mib=MiB",
		"agent_opcua_offered_values_per_s=values/s", "agent_opcua_values_per_s=values/s", "agent_opcua_cpu_cores=cores",
		"agent_opcua_values_per_s_per_core=values/s", "agent_opcua_peak_rss_mib=MiB",
		"agent_peak_rss_mib=MiB",
	} {
		b.ReportMetric(benchAgent.r[name[:strings.IndexByte(name, '=')]], name)
	}
}

// benchRig is a line, a private Mosquitto and an agent configuration, without the
// recording subscriber of the tests' rig (decoding every envelope would take CPU
// from the agent being measured).
type benchRig struct {
	b       *testing.B
	dir     string
	metrics string
	mqURL   string
	line    *plcsim.Line
}

func newBenchRig(b *testing.B, machines int) *benchRig {
	mq, err := testkit.StartMosquitto(filepath.Join(b.TempDir(), "mosquitto"))
	if err != nil {
		b.Fatal(err)
	}
	b.Cleanup(func() { mq.Stop() })
	port, err := testkit.FreePort()
	if err != nil {
		b.Fatal(err)
	}
	r := &benchRig{b: b, dir: b.TempDir(), metrics: "127.0.0.1:" + strconv.Itoa(port), mqURL: mq.URL(),
		line: plcsim.NewLine(plcsim.Config{Seed: 42, Machines: machines})}
	ctx, cancel := context.WithCancel(context.Background())
	b.Cleanup(cancel)
	go r.line.Run(ctx, 10*time.Millisecond, 100*time.Millisecond) // ten times faster than real time
	return r
}

// run starts the agent on equipment (YAML list items), waits for counter to move,
// and measures over benchWindow: counter's rate, the agent's CPU in cores and peak
// RSS. The agent's CPU profile over the window is printed on stderr.
func (r *benchRig) run(name, equipment, counter string) (perS, cores, rssMiB float64) {
	b := r.b
	cfg := fmt.Sprintf("agent:\n  id: gw-bench\n  tenant: bench\n  metrics_addr: %s\nmqtt:\n  url: %s\nbuffer:\n  dir: %s\n  max_bytes: 1073741824\npublish:\n  linger: 200ms\nequipment:\n%s",
		r.metrics, r.mqURL, filepath.Join(r.dir, "buffer"), equipment)
	file := filepath.Join(r.dir, "agent.yaml")
	if err := os.WriteFile(file, []byte(cfg), 0o644); err != nil {
		b.Fatal(err)
	}
	agent := testkit.StartChild(b, filepath.Join(r.dir, "agent.log"), "TAKT_AGENT_CHILD=run -c "+file, "TAKT_PPROF=1")
	defer agent.Stop()
	m := &rig{t: b, metrics: r.metrics}
	m.waitMetric(counter, 1, 60*time.Second)
	time.Sleep(benchWarmUp)
	profiled := make(chan string, 1)
	go func() {
		url := fmt.Sprintf("http://%s/debug/pprof/profile?seconds=%d", r.metrics, int(benchWindow.Seconds())-1)
		profiled <- testkit.CPUProfileTop(url, os.Args[0], filepath.Join(r.dir, "agent.pprof"))
	}()
	v0, err := m.metric(counter, "")
	if err != nil {
		b.Fatal(err)
	}
	c0, _, _ := procStats(agent.Pid())
	start := time.Now()
	time.Sleep(benchWindow)
	v1, err := m.metric(counter, "")
	if err != nil {
		b.Fatal(err)
	}
	c1, rss, err := procStats(agent.Pid())
	if err != nil {
		b.Fatal(err)
	}
	el := time.Since(start).Seconds()
	fmt.Fprintf(os.Stderr, "takt-agent CPU profile, %s:\n%s\n", name, <-profiled)
	return (v1 - v0) / el, (c1 - c0).Seconds() / el, float64(rss) / 1024
}

func measureModbus(b *testing.B, out map[string]float64) {
	r := newBenchRig(b, benchModbusPLCs)
	sim, err := plcsim.ServeModbus(r.line, "127.0.0.1", nil)
	if err != nil {
		b.Fatal(err)
	}
	defer sim.Stop()
	var eq strings.Builder
	for i, addr := range sim.Addrs {
		fmt.Fprintf(&eq, "  - {site: s, area: a, line: l, code: bench-%d, modbus: [{name: dev-%d, url: 'tcp://%s', interval: %s, tags: [", i, i, addr, benchModbusInterval)
		for k := range benchModbusTags {
			if k > 0 {
				eq.WriteString(", ")
			}
			fmt.Fprintf(&eq, "{name: r%d, address: %d}", k, 40+k)
		}
		eq.WriteString("]}]}\n")
	}
	perS, cores, rss := r.run("Modbus", eq.String(), "takt_agent_modbus_tags_read_total")
	out["agent_modbus_offered_tags_per_s"] = float64(benchModbusPLCs*benchModbusTags) / benchModbusInterval.Seconds()
	out["agent_modbus_tags_per_s"] = perS
	out["agent_modbus_cpu_cores"] = cores
	out["agent_modbus_tags_per_s_per_core"] = perS / cores
	out["agent_modbus_peak_rss_mib"] = rss
	out["agent_peak_rss_mib"] = max(out["agent_peak_rss_mib"], rss)
}

func measureOPCUA(b *testing.B, out map[string]float64) {
	r := newBenchRig(b, 1)
	// gopcua's server package stalls when one server carries thousands of monitored
	// items (create monitored items: EOF, then no answer), so the offer is split
	// over servers of benchOPCUAPerServer machines each, as a plant's PLCs are.
	var eq strings.Builder
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	for srvNo := range benchOPCUAMachines / benchOPCUAPerServer {
		line := plcsim.NewLine(plcsim.Config{Seed: uint64(srvNo), Machines: benchOPCUAPerServer})
		go line.Run(ctx, 10*time.Millisecond, 100*time.Millisecond)
		port, err := testkit.FreePort()
		if err != nil {
			b.Fatal(err)
		}
		srv, err := plcsim.ServeOPCUA(line, "127.0.0.1", port, benchOPCUAInterval)
		if err != nil {
			b.Fatal(err)
		}
		defer srv.Stop()
		fmt.Fprintf(&eq, "  - {site: s, area: a, line: l, code: opc-%d, opcua: [{name: opc-%d, endpoint: '%s', mode: subscribe, interval: %s, tags: [",
			srvNo, srvNo, srv.Endpoint, benchOPCUAInterval)
		for i := range benchOPCUAPerServer {
			name := line.Snapshot(i).Name
			for k, tag := range plcsim.OPCUATags {
				if i+k > 0 {
					eq.WriteString(", ")
				}
				fmt.Fprintf(&eq, "{name: %s_%s, namespace_uri: '%s', node_id: 's=%s.%s'}", strings.ReplaceAll(name, "-", "_"), tag, plcsim.NamespaceURI, name, tag)
			}
		}
		eq.WriteString("]}]}\n")
	}
	perS, cores, rss := r.run("OPC UA subscribe", eq.String(), "takt_agent_opcua_values_total")
	out["agent_opcua_offered_values_per_s"] = float64(benchOPCUAMachines*len(plcsim.OPCUATags)) / benchOPCUAInterval.Seconds()
	out["agent_opcua_values_per_s"] = perS
	out["agent_opcua_cpu_cores"] = cores
	out["agent_opcua_values_per_s_per_core"] = perS / cores
	out["agent_opcua_peak_rss_mib"] = rss
	out["agent_peak_rss_mib"] = max(out["agent_peak_rss_mib"], rss)
}
