package main

import (
	"fmt"
	"os"
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

// modbusBenchConfig: devices × 1000 uint16 tags (8 requests of 125 registers each),
// polled every 100 ms: 10,000 tags/s per device.
func modbusBenchEquipment(addrs []string) string {
	var b strings.Builder
	for i, addr := range addrs {
		fmt.Fprintf(&b, "  - {site: s, area: a, line: l, code: bench-%d, modbus: [{name: dev-%d, url: 'tcp://%s', interval: 100ms, gap_fill: 0, tags: [", i, i, addr)
		for k := range 1000 {
			if k > 0 {
				b.WriteString(", ")
			}
			fmt.Fprintf(&b, "{name: r%d, address: %d}", k, 40+k)
		}
		b.WriteString("]}]}\n")
	}
	return b.String()
}

var benchAgent struct {
	done                    bool
	tagsPerS, cores, rssMiB float64
	opcuaPerS               float64
}

// BenchmarkAgent runs takt-agent (as a child process, with the race detector only if
// the test binary has it: run it without -race) against plcsim and a private
// Mosquitto for 10 s per source: Modbus with 6 devices of 1,000 tags each at 100 ms
// (60,000 tags/s offered), then OPC UA polling 50 machines × 9 nodes at 100 ms. It
// reports the tags read per second, the agent's CPU in cores and its peak RSS over
// the Modbus run, and the OPC UA values per second. Everything read is published.
func BenchmarkAgent(b *testing.B) {
	if !benchAgent.done {
		measureAgent(b)
		benchAgent.done = true
	}
	for b.Loop() {
	}
	b.ReportMetric(benchAgent.tagsPerS, "agent_modbus_tags_per_s=tags/s")
	b.ReportMetric(benchAgent.cores, "agent_cpu_cores=cores")
	b.ReportMetric(benchAgent.rssMiB, "agent_peak_rss_mib=MiB")
	b.ReportMetric(benchAgent.opcuaPerS, "agent_opcua_values_per_s=values/s")
}

func measureAgent(b *testing.B) {
	// Modbus.
	r := newRig(b, 6)
	r.config("  max_bytes: 1073741824\n", time.Second, modbusBenchEquipment(r.sim.Addrs))
	agent := r.start()
	time.Sleep(2 * time.Second) // warm up
	t0, _ := r.metric("takt_agent_modbus_tags_read_total", `device="dev-`)
	c0, _, _ := procStats(agent.Pid())
	start := time.Now()
	time.Sleep(10 * time.Second)
	t1, _ := r.metric("takt_agent_modbus_tags_read_total", `device="dev-`)
	c1, rss, err := procStats(agent.Pid())
	if err != nil {
		b.Fatal(err)
	}
	el := time.Since(start).Seconds()
	benchAgent.tagsPerS = (t1 - t0) / el
	benchAgent.cores = (c1 - c0).Seconds() / el
	benchAgent.rssMiB = float64(rss) / 1024
	agent.Stop()

	// OPC UA, polling.
	r = newRig(b, 50)
	port, _ := testkit.FreePort()
	srv, err := plcsim.ServeOPCUA(r.line, "127.0.0.1", port, time.Second)
	if err != nil {
		b.Fatal(err)
	}
	defer srv.Stop()
	var eq strings.Builder
	fmt.Fprintf(&eq, "  - {site: s, area: a, line: l, code: opc-bench, opcua: [{name: opc, endpoint: '%s', mode: poll, interval: 100ms, tags: [", srv.Endpoint)
	for i := range 50 {
		name := r.line.Snapshot(i).Name
		for k, tag := range plcsim.OPCUATags {
			if i+k > 0 {
				eq.WriteString(", ")
			}
			fmt.Fprintf(&eq, "{name: %s_%s, namespace_uri: '%s', node_id: 's=%s.%s'}", strings.ReplaceAll(name, "-", "_"), tag, plcsim.NamespaceURI, name, tag)
		}
	}
	eq.WriteString("]}]}\n")
	r.config("", time.Second, eq.String())
	agent = r.start()
	time.Sleep(2 * time.Second)
	v0, _ := r.metric("takt_agent_opcua_values_total", "")
	start = time.Now()
	time.Sleep(10 * time.Second)
	v1, _ := r.metric("takt_agent_opcua_values_total", "")
	benchAgent.opcuaPerS = (v1 - v0) / time.Since(start).Seconds()
	agent.Stop()
}
