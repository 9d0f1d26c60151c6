package main

import (
	"bufio"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	mqtt "github.com/eclipse/paho.mqtt.golang"

	"takt.dev/edge-agent/internal/buffer"
	"takt.dev/edge-agent/internal/plcsim"
	"takt.dev/schemas"
	"takt.dev/testkit"
)

// TestMain doubles as takt-agent: the integration tests run the test binary as a
// child process with TAKT_AGENT_CHILD set, so that they can SIGKILL a real agent.
func TestMain(m *testing.M) {
	if args := os.Getenv("TAKT_AGENT_CHILD"); args != "" {
		main0(strings.Fields(args))
		return
	}
	testkit.Main(m)
}

// rig is one test's world: a simulated line, a broker, a subscriber recording what
// arrives, and the agent's configuration.
type rig struct {
	t       testing.TB
	mq      *testkit.MosquittoServer
	line    *plcsim.Line
	sim     *plcsim.ModbusServers
	tenant  string
	dir     string
	cfgFile string
	metrics string // host:port of the agent's /metrics

	mu          sync.Mutex
	arrivals    []uint64 // seqs in arrival order
	redelivered int      // messages the broker delivered again (DUP set): at-least-once between broker and subscriber
	status      string   // the agent's last status message: online or offline
	quality     map[string]map[schemas.Quality]int
	sub         mqtt.Client                // the recording subscriber
	identities  map[string]map[uint64]bool // incarnation → first seqs of its envelopes
}

func newRig(t testing.TB, machines int) *rig {
	t.Helper()
	return newRigWith(t, machines, testkit.Mosquitto(t))
}

func newRigWith(t testing.TB, machines int, mq *testkit.MosquittoServer) *rig {
	t.Helper()
	r := &rig{t: t, mq: mq, dir: t.TempDir(), quality: map[string]map[schemas.Quality]int{},
		tenant: fmt.Sprintf("t%d", time.Now().UnixNano())}
	r.line = plcsim.NewLine(plcsim.Config{Seed: 42, Machines: machines})
	sim, err := plcsim.ServeModbus(r.line, "127.0.0.1", nil)
	if err != nil {
		t.Fatal(err)
	}
	r.sim = sim
	t.Cleanup(sim.Stop)
	ctx, cancel := context.WithCancel(context.Background())
	t.Cleanup(cancel)
	go r.line.Run(ctx, 10*time.Millisecond, 100*time.Millisecond) // ten times faster than real time
	r.subscribe()
	port, _ := testkit.FreePort()
	r.metrics = "127.0.0.1:" + strconv.Itoa(port)
	return r
}

// subscribe records every envelope of the test's tenant through a persistent
// session, so that nothing is lost to the subscriber while the broker restarts.
func (r *rig) subscribe() {
	o := mqtt.NewClientOptions().AddBroker(r.mq.URL()).SetClientID("sub-" + r.tenant).SetCleanSession(false).
		SetAutoReconnect(true).SetConnectRetry(true).SetConnectRetryInterval(100 * time.Millisecond).SetMaxReconnectInterval(time.Second)
	o.SetDefaultPublishHandler(r.receive)
	c := mqtt.NewClient(o)
	r.sub = c
	if tok := c.Connect(); !tok.WaitTimeout(10*time.Second) || tok.Error() != nil {
		r.t.Fatal(tok.Error())
	}
	if tok := c.Subscribe(schemas.TopicRoot+"/"+r.tenant+"/#", 1, r.receive); !tok.WaitTimeout(10*time.Second) || tok.Error() != nil {
		r.t.Fatal(tok.Error())
	}
	status := func(_ mqtt.Client, m mqtt.Message) {
		var st struct{ State string }
		json.Unmarshal(m.Payload(), &st)
		r.mu.Lock()
		r.status = st.State
		r.mu.Unlock()
	}
	if tok := c.Subscribe(schemas.StatusTopic(r.tenant, "gw-"+r.tenant), 1, status); !tok.WaitTimeout(10*time.Second) || tok.Error() != nil {
		r.t.Fatal(tok.Error())
	}
	r.t.Cleanup(func() { c.Disconnect(100) })
}

func (r *rig) receive(_ mqtt.Client, m mqtt.Message) {
	if m.Duplicate() {
		// The broker resending what it had sent the subscriber before its restart
		// is the broker's QoS 1, not the agent's doing; the agent's own resends are
		// new publishes and arrive without the flag.
		r.mu.Lock()
		r.redelivered++
		r.mu.Unlock()
		return
	}
	env, err := schemas.Decode(m.Payload())
	if err != nil {
		r.t.Errorf("the agent published an invalid envelope: %v", err)
		return
	}
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.identities == nil {
		r.identities = map[string]map[uint64]bool{}
	}
	if r.identities[env.Incarnation] == nil {
		r.identities[env.Incarnation] = map[uint64]bool{}
	}
	r.identities[env.Incarnation][env.Samples[0].Seq] = true
	for _, s := range env.Samples {
		r.arrivals = append(r.arrivals, s.Seq)
		if r.quality[env.Equipment] == nil {
			r.quality[env.Equipment] = map[schemas.Quality]int{}
		}
		r.quality[env.Equipment][s.Quality]++
	}
}

// waitStatus waits for the agent's retained status to read want.
func (r *rig) waitStatus(want string) {
	r.t.Helper()
	deadline := time.Now().Add(20 * time.Second)
	for {
		r.mu.Lock()
		got := r.status
		r.mu.Unlock()
		if got == want {
			return
		}
		if time.Now().After(deadline) {
			r.t.Fatalf("agent status %q, want %q", got, want)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

func (r *rig) received() []uint64 {
	r.mu.Lock()
	defer r.mu.Unlock()
	return append([]uint64(nil), r.arrivals...)
}

// config writes the agent configuration for the line's machines plus extra devices.
func (r *rig) config(bufferYAML string, interval time.Duration, extra ...string) {
	names := make([]string, r.line.Machines())
	for i := range names {
		names[i] = r.line.Snapshot(i).Name
	}
	y := plcsim.AgentConfig("gw-"+r.tenant, r.tenant, r.mq.URL(), filepath.Join(r.dir, "buffer"), r.sim.Addrs, names, interval)
	y = strings.Replace(y, "metrics_addr: 127.0.0.1:0", "metrics_addr: "+r.metrics, 1)
	y = strings.Replace(y, "buffer:\n  dir: "+filepath.Join(r.dir, "buffer")+"\n", "buffer:\n  dir: "+filepath.Join(r.dir, "buffer")+"\n"+bufferYAML, 1)
	y += strings.Join(extra, "")
	r.cfgFile = filepath.Join(r.dir, "agent.yaml")
	if err := os.WriteFile(r.cfgFile, []byte(y), 0o644); err != nil {
		r.t.Fatal(err)
	}
}

func (r *rig) start() *testkit.Process {
	r.t.Helper()
	p := testkit.StartChild(r.t, filepath.Join(r.dir, "agent.log"), "TAKT_AGENT_CHILD=run -c "+r.cfgFile)
	r.waitMetric("takt_agent_samples_total", 1, 20*time.Second)
	return p
}

// metric returns the sum of every series of the named metric the agent exports
// whose labels contain the label filter.
func (r *rig) metric(name, filter string) (float64, error) {
	resp, err := http.Get("http://" + r.metrics + "/metrics")
	if err != nil {
		return 0, err
	}
	defer resp.Body.Close()
	sum, found := 0.0, false
	sc := bufio.NewScanner(resp.Body)
	for sc.Scan() {
		line := sc.Text()
		if !strings.HasPrefix(line, name+" ") && !strings.HasPrefix(line, name+"{") {
			continue
		}
		if filter != "" && !strings.Contains(line, filter) {
			continue
		}
		v, err := strconv.ParseFloat(line[strings.LastIndexByte(line, ' ')+1:], 64)
		if err == nil {
			sum, found = sum+v, true
		}
	}
	if !found {
		return 0, fmt.Errorf("metric %s{%s} not exported", name, filter)
	}
	return sum, nil
}

func (r *rig) waitMetric(name string, atLeast float64, within time.Duration) {
	r.t.Helper()
	deadline := time.Now().Add(within)
	for {
		v, err := r.metric(name, "")
		if err == nil && v >= atLeast {
			return
		}
		if time.Now().After(deadline) {
			r.t.Fatalf("%s = %v (%v) after %s, want at least %v", name, v, err, within, atLeast)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// lastSeq reads the agent's buffer (the agent must be stopped).
func (r *rig) lastSeq() uint64 {
	b, err := buffer.Open(buffer.Options{Dir: filepath.Join(r.dir, "buffer"), MaxBytes: 256 << 20, SegmentBytes: 8 << 20})
	if err != nil {
		r.t.Fatal(err)
	}
	defer b.Close()
	return b.LastSeq()
}

// expectAllInOrder checks that seqs 1..last arrived, each first in seq order. A seq
// may arrive again later: the replay window resends acknowledged envelopes after a
// reconnect, and downstream drops them by their identity.
func (r *rig) expectAllInOrder(last uint64) {
	r.t.Helper()
	firsts := func() []uint64 {
		seen := map[uint64]bool{}
		var out []uint64
		for _, s := range r.received() {
			if !seen[s] {
				seen[s] = true
				out = append(out, s)
			}
		}
		return out
	}
	deadline := time.Now().Add(20 * time.Second)
	for uint64(len(firsts())) < last && time.Now().Before(deadline) {
		time.Sleep(50 * time.Millisecond)
	}
	got := firsts()
	r.mu.Lock()
	r.t.Logf("%d samples arrived (%d again, from the replay window); the broker redelivered %d messages to the subscriber",
		len(got), len(r.arrivals)-len(got), r.redelivered)
	r.mu.Unlock()
	if uint64(len(got)) != last {
		r.t.Fatalf("%d distinct samples arrived, want seq 1..%d", len(got), last)
	}
	for i, s := range got {
		if s != uint64(i+1) {
			r.t.Fatalf("arrival %d is seq %d, want %d: not every sample first in seq order", i, s, i+1)
		}
	}
}

func TestBrokerStoppedAndRestarted(t *testing.T) {
	r := newRig(t, 3)
	r.config("", 100*time.Millisecond)
	agent := r.start()
	r.waitMetric("takt_agent_published_samples_total", 100, 20*time.Second)
	if err := r.mq.Stop(); err != nil {
		t.Fatal(err)
	}
	time.Sleep(2 * time.Second) // the agent keeps polling into its buffer
	if err := r.mq.Start(); err != nil {
		t.Fatal(err)
	}
	r.waitMetric("takt_agent_mqtt_connected", 1, 30*time.Second)
	r.waitStatus("online") // birth message again after the reconnect
	time.Sleep(time.Second)
	agent.Stop()
	r.waitStatus("offline")
	last := r.lastSeq()
	if last < 500 {
		t.Fatalf("only %d samples produced", last)
	}
	r.expectAllInOrder(last)
}

// TestBrokerKilledUnderLoad crashes the broker (SIGKILL) while messages it has
// acknowledged to the agent wait, unsaved, for a subscriber that is away (a bridge
// restarting, say): the broker loses them. The agent sends its replay window again
// when it reconnects, so every sample arrives.
func TestBrokerKilledUnderLoad(t *testing.T) {
	mq, err := testkit.StartMosquittoAutosave(filepath.Join(t.TempDir(), "mq"), time.Hour)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { mq.Close() })
	r := newRigWith(t, 3, mq)
	if err := mq.Save(); err != nil { // the subscriber's session is saved; nothing after it will be
		t.Fatal(err)
	}
	r.config("  replay_window: 2m\n", 100*time.Millisecond)
	agent := r.start()
	r.waitMetric("takt_agent_published_samples_total", 100, 20*time.Second)
	r.sub.Disconnect(100) // the subscriber goes away: the broker queues for its session
	published, _ := r.metric("takt_agent_published_samples_total", "")
	r.waitMetric("takt_agent_published_samples_total", published+300, 20*time.Second)
	if err := mq.Kill(); err != nil {
		t.Fatal(err)
	}
	time.Sleep(500 * time.Millisecond)
	if err := mq.Start(); err != nil {
		t.Fatal(err)
	}
	if tok := r.sub.Connect(); !tok.WaitTimeout(10*time.Second) || tok.Error() != nil {
		t.Fatal(tok.Error())
	}
	r.waitMetric("takt_agent_mqtt_connected", 1, 30*time.Second)
	r.waitMetric("takt_agent_replayed_envelopes_total", 1, 30*time.Second)
	time.Sleep(time.Second)
	agent.Stop()
	r.waitStatus("offline")
	last := r.lastSeq()
	deadline := time.Now().Add(20 * time.Second)
	for {
		got := map[uint64]int{}
		for _, s := range r.received() {
			got[s]++
		}
		missing := 0
		for s := uint64(1); s <= last; s++ {
			if got[s] == 0 {
				missing++
			}
		}
		if missing == 0 {
			t.Logf("%d samples produced, %d arrivals (the replay's duplicates are dropped downstream)", last, len(r.received()))
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("%d of seq 1..%d never arrived: the broker's crash lost what it had acknowledged", missing, last)
		}
		time.Sleep(100 * time.Millisecond)
	}
}

func TestAgentKilledDuringOutage(t *testing.T) {
	r := newRig(t, 3)
	r.config("", 100*time.Millisecond)
	agent := r.start()
	r.waitMetric("takt_agent_published_samples_total", 100, 20*time.Second)
	if err := r.mq.Stop(); err != nil {
		t.Fatal(err)
	}
	time.Sleep(2 * time.Second)
	agent.Kill()
	killedAt := r.lastSeq()
	before := uint64(len(r.received()))
	if killedAt <= before {
		t.Fatalf("no backlog: %d samples buffered, %d already delivered", killedAt, before)
	}
	if err := r.mq.Start(); err != nil {
		t.Fatal(err)
	}
	agent = r.start()
	r.waitMetric("takt_agent_published_samples_total", float64(killedAt-before), 30*time.Second)
	time.Sleep(time.Second)
	agent.Stop()
	last := r.lastSeq()
	if last <= killedAt {
		t.Fatalf("after the restart seq did not continue: last %d, at the kill %d", last, killedAt)
	}
	r.expectAllInOrder(last) // the backlog arrived, and seq went on from killedAt+1
}

// blackhole accepts connections and never answers: a PLC that hangs.
func blackhole(t *testing.T) string {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { ln.Close() })
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			go func() { io.Copy(io.Discard, c) }()
		}
	}()
	return ln.Addr().String()
}

func TestUnreachableDeviceDoesNotSlowOthers(t *testing.T) {
	r := newRig(t, 2)
	hole := blackhole(t)
	r.config("", 100*time.Millisecond, fmt.Sprintf(`  - site: lyon
    area: packaging
    line: line-1
    code: hung-1
    modbus:
      - name: hung
        url: tcp://%s
        interval: 100ms
        timeout: 1s
        tags:
          - {name: speed, address: 10, type: float32}
          - {name: state, role: state, address: 0, states: {1: {state: RUNNING}}}
`, hole))
	agent := r.start()
	start := time.Now()
	before := map[string]float64{}
	for _, d := range []string{"plc-filler-1", "plc-capper-1", "hung"} {
		before[d], _ = r.metric("takt_agent_modbus_polls_total", `device="`+d+`"`)
	}
	time.Sleep(3 * time.Second)
	elapsed := time.Since(start)
	for _, d := range []string{"plc-filler-1", "plc-capper-1"} {
		after, err := r.metric("takt_agent_modbus_polls_total", `device="`+d+`"`)
		if err != nil {
			t.Fatal(err)
		}
		want := elapsed.Seconds() / 0.1
		if polls := after - before[d]; polls < 0.8*want {
			t.Errorf("device %s polled %v times in %s, want about %v: the hung device slowed it", d, polls, elapsed, want)
		}
	}
	hung, _ := r.metric("takt_agent_modbus_polls_total", `device="hung"`)
	if hung-before["hung"] > 4 {
		t.Errorf("the hung device completed %v polls in 3s with a 1s timeout", hung-before["hung"])
	}
	errs, _ := r.metric("takt_agent_modbus_errors_total", `device="hung"`)
	if errs == 0 {
		t.Error("no errors counted for the hung device")
	}
	agent.Stop()
	time.Sleep(500 * time.Millisecond)
	r.mu.Lock()
	defer r.mu.Unlock()
	if q := r.quality["hung-1"]; q[schemas.QualityBad] == 0 || q[schemas.QualityGood] != 0 {
		t.Errorf("hung device's samples by quality: %v, want only bad ones", q)
	}
	if q := r.quality["filler-1"]; q[schemas.QualityGood] == 0 {
		t.Errorf("filler's samples by quality: %v", q)
	}
}

// TestDiskFull puts the buffer on a 256 KiB tmpfs, far below buffer.max_bytes, and
// takes the broker away: the disk fills. The agent pauses polling with its memory
// bounded, and resumes by itself once the broker is back and acknowledged data
// frees space (the replay window's segments are given up first). Every sample
// produced arrives.
func TestDiskFull(t *testing.T) {
	if os.Geteuid() != 0 {
		t.Skip("mounting a tmpfs needs root (CI runs as root)")
	}
	r := newRig(t, 3)
	dir := filepath.Join(r.dir, "buffer")
	if err := os.MkdirAll(dir, 0o750); err != nil {
		t.Fatal(err)
	}
	if out, err := exec.Command("mount", "-t", "tmpfs", "-o", "size=256k", "tmpfs", dir).CombinedOutput(); err != nil {
		t.Fatalf("mount a tmpfs for the buffer: %v: %s", err, out)
	}
	t.Cleanup(func() { exec.Command("umount", "-l", dir).Run() })
	r.config("  max_bytes: 16777216\n  segment_bytes: 65536\n", 50*time.Millisecond)
	agent := r.start()
	r.waitMetric("takt_agent_published_samples_total", 100, 20*time.Second)
	if err := r.mq.Stop(); err != nil {
		t.Fatal(err)
	}
	r.waitMetric("takt_agent_buffer_write_blocked", 1, 60*time.Second)
	rss := func() int {
		b, _ := os.ReadFile(fmt.Sprintf("/proc/%d/status", agent.Pid()))
		for _, line := range strings.Split(string(b), "\n") {
			if f := strings.Fields(line); len(f) >= 2 && f[0] == "VmRSS:" {
				kb, _ := strconv.Atoi(f[1])
				return kb
			}
		}
		return -1
	}
	samples0, _ := r.metric("takt_agent_samples_total", "")
	rss0 := rss()
	time.Sleep(3 * time.Second) // 60 polls' worth of time
	samples1, _ := r.metric("takt_agent_samples_total", "")
	rss1 := rss()
	t.Logf("while the disk is full: %v samples produced in 3 s, RSS %d → %d KiB", samples1-samples0, rss0, rss1)
	if samples1-samples0 > 100 {
		t.Errorf("%v samples produced in 3 s with the disk full: polling did not pause", samples1-samples0)
	}
	if rss1-rss0 > 8<<10 {
		t.Errorf("RSS grew from %d to %d KiB with the disk full", rss0, rss1)
	}
	if blocked, _ := r.metric("takt_agent_buffer_write_errors_total", ""); blocked < 1 {
		t.Errorf("takt_agent_buffer_write_errors_total = %v", blocked)
	}
	if err := r.mq.Start(); err != nil {
		t.Fatal(err)
	}
	r.waitMetric("takt_agent_mqtt_connected", 1, 30*time.Second)
	deadline := time.Now().Add(30 * time.Second)
	for {
		if v, _ := r.metric("takt_agent_buffer_write_blocked", ""); v == 0 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatal("the buffer still cannot be written 30 s after the broker came back")
		}
		time.Sleep(50 * time.Millisecond)
	}
	r.waitMetric("takt_agent_samples_total", samples1+100, 20*time.Second) // polling resumed
	agent.Stop()
	r.waitStatus("offline")
	r.expectAllInOrder(r.lastSeq())
}

// TestPowerLoss kills the agent while the broker is away and tears the last record
// of its last segment, as power loss does to what was not yet fsynced. The agent
// starts again without fuss, cuts the torn record off and counts it, sends the
// rest, and numbers on from the last intact record (under a new incarnation, so
// the numbers it reuses are not taken for the lost ones downstream).
func TestPowerLoss(t *testing.T) {
	r := newRig(t, 3)
	r.config("", 50*time.Millisecond)
	if err := r.mq.Stop(); err != nil {
		t.Fatal(err)
	}
	agent := r.start()
	r.waitMetric("takt_agent_buffer_appended_samples_total", 500, 30*time.Second)
	agent.Kill()
	killedAt := r.lastSeq()
	segs, _ := filepath.Glob(filepath.Join(r.dir, "buffer", "*.seg"))
	if len(segs) == 0 {
		t.Fatal("no segment files")
	}
	tail := segs[len(segs)-1]
	st, err := os.Stat(tail)
	if err != nil || st.Size() < 100 {
		t.Fatalf("last segment %s: %v, %d bytes", tail, err, st.Size())
	}
	if err := os.Truncate(tail, st.Size()-7); err != nil { // a torn record
		t.Fatal(err)
	}
	if err := r.mq.Start(); err != nil {
		t.Fatal(err)
	}
	agent = r.start()
	if n, _ := r.metric("takt_agent_buffer_corrupt_tails_total", ""); n != 1 {
		t.Fatalf("takt_agent_buffer_corrupt_tails_total = %v, want 1 (the torn record)", n)
	}
	torn, _ := r.metric("takt_agent_buffer_torn_samples_total", "")
	if torn < 1 || torn > 500 {
		t.Fatalf("takt_agent_buffer_torn_samples_total = %v, want the torn envelope's samples (1 to 500)", torn)
	}
	r.waitMetric("takt_agent_mqtt_connected", 1, 30*time.Second)
	r.waitMetric("takt_agent_published_samples_total", float64(killedAt)+100, 30*time.Second)
	agent.Stop()
	r.waitStatus("offline")
	// Every seq arrives but those of the torn record, which the metric counted:
	// the last ones of the killed run. The new run numbers on after them.
	lost := map[uint64]bool{}
	for s := killedAt - uint64(torn) + 1; s <= killedAt; s++ {
		lost[s] = true
	}
	last := r.lastSeq()
	deadline := time.Now().Add(20 * time.Second)
	for {
		got := map[uint64]bool{}
		for _, s := range r.received() {
			got[s] = true
		}
		var missing, unexpected []uint64
		for s := uint64(1); s <= last; s++ {
			if !got[s] && !lost[s] {
				missing = append(missing, s)
			}
			if got[s] && lost[s] {
				unexpected = append(unexpected, s)
			}
		}
		if len(unexpected) > 0 {
			t.Fatalf("seqs %v of the torn record arrived", unexpected)
		}
		if len(missing) == 0 {
			t.Logf("seq 1..%d: %d lost in the torn record (%d..%d), every other one arrived", last, int(torn), killedAt-uint64(torn)+1, killedAt)
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("%d seqs neither arrived nor counted lost, from %d", len(missing), missing[0])
		}
		time.Sleep(100 * time.Millisecond)
	}
}

// TestReimagedGateway: the gateway is re-imaged (its buffer directory gone) and the
// agent starts again with the same id: its seq starts over from 1, under a new
// incarnation, so that no envelope identity (agent, incarnation, first seq) of the
// new run is one of the old run's, and downstream stores both.
func TestReimagedGateway(t *testing.T) {
	r := newRig(t, 3)
	r.config("", 50*time.Millisecond)
	agent := r.start()
	r.waitMetric("takt_agent_published_samples_total", 200, 20*time.Second)
	agent.Stop()
	r.waitStatus("offline")
	if err := os.RemoveAll(filepath.Join(r.dir, "buffer")); err != nil {
		t.Fatal(err)
	}
	agent = r.start()
	r.waitMetric("takt_agent_published_samples_total", 200, 20*time.Second)
	agent.Stop()
	r.waitStatus("offline")
	r.mu.Lock()
	defer r.mu.Unlock()
	if len(r.identities) != 2 {
		t.Fatalf("%d incarnations seen, want 2 (one per run)", len(r.identities))
	}
	var runs []map[uint64]bool
	for inc, firsts := range r.identities {
		if inc == "" || !firsts[1] {
			t.Fatalf("incarnation %q: first seqs %v; want a named incarnation whose seq starts at 1", inc, firsts)
		}
		runs = append(runs, firsts)
	}
	t.Logf("two runs, seq from 1 in each: %d and %d envelopes, no identity shared", len(runs[0]), len(runs[1]))
}

func TestBufferFullDropsOldest(t *testing.T) {
	r := newRig(t, 3)
	r.config("  max_bytes: 262144\n  segment_bytes: 65536\n  when_full: drop_oldest\n", 20*time.Millisecond)
	if err := r.mq.Stop(); err != nil {
		t.Fatal(err)
	}
	agent := r.start()
	r.waitMetric("takt_agent_buffer_dropped_samples_total", 1, 60*time.Second)
	if b, _ := r.metric("takt_agent_buffer_bytes", ""); b > 262144 {
		t.Fatalf("buffer holds %v bytes, bound 262144", b)
	}
	if err := r.mq.Start(); err != nil {
		t.Fatal(err)
	}
	r.waitMetric("takt_agent_mqtt_connected", 1, 30*time.Second)
	// Let the backlog drain, then stop.
	deadline := time.Now().Add(30 * time.Second)
	for {
		if n, _ := r.metric("takt_agent_buffer_records", ""); n < 5 || time.Now().After(deadline) {
			break
		}
		time.Sleep(50 * time.Millisecond)
	}
	dropped, _ := r.metric("takt_agent_buffer_dropped_samples_total", "")
	agent.Stop()
	last := r.lastSeq()
	time.Sleep(time.Second)
	got := r.received()
	seen := map[uint64]bool{}
	for i, s := range got {
		if seen[s] || (i > 0 && s < got[i-1]) {
			t.Fatalf("seq %d arrived twice or out of order", s)
		}
		seen[s] = true
	}
	if !seen[last] {
		t.Fatalf("the last seq %d did not arrive", last)
	}
	if missing := float64(last) - float64(len(got)); missing != dropped {
		t.Fatalf("%v samples missing, the drop counter says %v", missing, dropped)
	}
}

func TestBufferFullPausesPolling(t *testing.T) {
	r := newRig(t, 3)
	r.config("  max_bytes: 262144\n  segment_bytes: 65536\n  when_full: pause\n", 20*time.Millisecond)
	if err := r.mq.Stop(); err != nil {
		t.Fatal(err)
	}
	agent := r.start()
	r.waitMetric("takt_agent_buffer_full_waits_total", 1, 60*time.Second)
	time.Sleep(500 * time.Millisecond)
	p1, _ := r.metric("takt_agent_modbus_polls_total", "")
	time.Sleep(time.Second)
	p2, _ := r.metric("takt_agent_modbus_polls_total", "")
	if p2-p1 > 3 { // one poll per device may be under way when the buffer fills
		t.Fatalf("polling went on while the buffer was full: %v polls in 1s", p2-p1)
	}
	if d, _ := r.metric("takt_agent_buffer_dropped_samples_total", ""); d != 0 {
		t.Fatalf("%v samples dropped under the pause policy", d)
	}
	if err := r.mq.Start(); err != nil {
		t.Fatal(err)
	}
	r.waitMetric("takt_agent_modbus_polls_total", p2+30, 30*time.Second)
	agent.Stop()
	r.expectAllInOrder(r.lastSeq())
}

func TestValidateNamesTheFault(t *testing.T) {
	dir := t.TempDir()
	cases := []struct{ yaml, want string }{
		{"agent: {id: gw, tenant: acme}\nmqtt: {url: 'tcp://b:1883'}\nequipment:\n  - {site: s, area: a, line: l, code: press-1, modbus: [{name: plc, url: 'tcp://p:502', tags: [{name: speed, address: 40001, type: FLOAT23}]}]}\n",
			`equipment "press-1": modbus device "plc": tag "speed": type "FLOAT23": unknown`},
		{"agent: {id: gw, tenant: acme}\nmqtt: {url: 'tcp://b:1883'}\nequipment:\n  - {site: s, area: a, line: l, code: press-1, modbus: [{name: plc, url: 'tcp://p:502', tags: [{name: speed, address: 70000}]}]}\n",
			`tag "speed": address 70000: want 0 to 65535`},
		{"agent: {id: gw, tenant: acme}\nmqtt: {url: 'tcp://b:1883'}\nequipment:\n  - {site: s, area: a, line: l, code: press-1, modbus: [{name: plc, url: 'tcp://p:502', tags: [{name: st, role: state, address: 0, states: {1: {state: RUNING}}}]}]}\n",
			`tag "st": states[1]: unknown state category "RUNING"`},
		{"agent: {id: gw, tenant: acme}\nmqtt: {url: 'tcp://b:1883'}\nequipment:\n  - {site: s, area: a, line: l, code: press-1, modbus: [{name: plc, url: 'udp://p:502', tags: [{name: c, role: counter, address: 0}]}]}\n",
			`modbus device "plc": url "udp://p:502": scheme must be tcp, rtuovertcp or rtu`},
		{"agent: {id: gw, tenant: acme}\nmqtt: {url: 'tcp://b:1883'}\nequipment:\n  - {site: s, area: a, line: l, code: press-1, modbus: [{name: plc, url: 'tcp://p:502', tags: [{name: c, role: counter, address: 0}]}]}\n",
			`tag "c": counter: unknown counter kind ""`},
		{"agent: {id: gw, tenant: acme}\nmqtt: {url: 'tcp://b:1883'}\nbuffer: {when_full: wait}\nequipment: []\n",
			`buffer.when_full "wait": want drop_oldest or pause`},
		{"agent: {id: gw, tenant: acme}\nmqtt: {url: 'tcp://b:1883', qos: 2}\n", `line 2: mqtt.qos: unknown key`},
		// A misspelt key does not hide the other faults: every one, with its line.
		{"agent: {id: gw, tenant: acme, heartbeat: often}\nmqtt: {url: 'tcp://b:1883'}\nequipment:\n  - site: s\n    area: a\n    line: l\n    code: press-1\n" +
			"    opcua:\n      - name: plc\n        endpoint: opc.tcp://p:4840\n        securty_policy: Basic256Sha256\n        tags: [{name: speed, node_id: 'ns=2;s=Speed', role: speeed}]\n",
			"line 1: cannot unmarshal !!str `often` into a duration (such as 500ms, 30s, 5m)\n" +
				`line 11: equipment[0].opcua[0].securty_policy: unknown key (did you mean "security_policy"?)`},
		{"agent: {id: gw, tenant: acme}\nmqtt: {url: 'tcp://b:1883'}\nequipment:\n  - {site: s, area: a, line: l, code: press-1, opcua: [{name: plc, endpoint: 'opc.tcp://p:4840', securty_policy: None, tags: [{name: speed, node_id: 'ns=2;s=Speed', role: speeed}]}]}\n",
			`role "speeed": want measurement, state, counter or product`},
	}
	for i, c := range cases {
		f := filepath.Join(dir, fmt.Sprintf("c%d.yaml", i))
		os.WriteFile(f, []byte(c.yaml), 0o644)
		err := run(context.Background(), []string{"validate", "-c", f}, io.Discard, io.Discard)
		if err == nil || !strings.Contains(err.Error(), c.want) {
			t.Errorf("case %d: err = %v\nwant it to contain %q", i, err, c.want)
		}
	}
	var out strings.Builder
	if err := run(context.Background(), []string{"validate", "-c", "../../agent.example.yaml"}, &out, io.Discard); err != nil {
		t.Fatalf("agent.example.yaml: %v", err)
	}
}

// TestLastWill: an agent that dies without a goodbye is announced offline by the
// broker (its last will).
func TestLastWill(t *testing.T) {
	r := newRig(t, 1)
	r.config("", 100*time.Millisecond)
	agent := r.start()
	r.waitStatus("online")
	agent.Kill()
	r.waitStatus("offline")
}

// TestMQTTOverTLS: the agent publishes through a TLS listener that checks its client
// certificate, with the broker's certificate checked against mqtt.ca_file.
func TestMQTTOverTLS(t *testing.T) {
	mq, err := testkit.StartMosquittoTLS(filepath.Join(t.TempDir(), "mq"))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { mq.Close() })
	r := newRigWith(t, 1, mq)
	r.config("", 100*time.Millisecond)
	cfg, _ := os.ReadFile(r.cfgFile)
	tlsMQTT := fmt.Sprintf("mqtt:\n  url: ssl://127.0.0.1:%d\n  ca_file: %s\n  cert_file: %s\n  key_file: %s\n",
		mq.TLSPort, mq.PKI.CA, mq.PKI.ClientCert, mq.PKI.ClientKey)
	cfg = []byte(strings.Replace(string(cfg), "mqtt:\n  url: "+mq.URL()+"\n", tlsMQTT, 1))
	os.WriteFile(r.cfgFile, cfg, 0o644)
	agent := r.start()
	r.waitMetric("takt_agent_published_samples_total", 50, 20*time.Second)
	agent.Stop()
	r.expectAllInOrder(r.lastSeq())

	// Without the client certificate the broker refuses the agent: nothing is published.
	cfg = []byte(strings.Replace(string(cfg), fmt.Sprintf("  cert_file: %s\n  key_file: %s\n", mq.PKI.ClientCert, mq.PKI.ClientKey), "", 1))
	os.WriteFile(r.cfgFile, cfg, 0o644)
	agent = r.start()
	time.Sleep(2 * time.Second)
	if c, _ := r.metric("takt_agent_mqtt_connected", ""); c != 0 {
		t.Fatal("connected to a broker that requires a client certificate without one")
	}
	agent.Stop()
}
