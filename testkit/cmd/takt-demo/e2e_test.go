package main

import (
	"context"
	"encoding/json"
	"fmt"
	"math"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"

	"takt.dev/plant/oee"
	"takt.dev/schemas"
	"takt.dev/testkit"
)

func TestMain(m *testing.M) { testkit.Main(m) }

// segment of the scripted shift, as plcsim's -script takes it.
type segment struct {
	For    time.Duration
	State  uint16
	Reason uint16
	Cycle  time.Duration
}

var simStart = time.Date(2026, 11, 20, 5, 0, 0, 0, time.UTC)

// The scripted day: not scheduled until 06:00, then a shift of steady states (30
// minutes and more, each reported once, as a subscription reports them) with a
// breakdown, a changeover, speed losses and a planned break, until 14:00.
var shift = []segment{
	{For: time.Hour, State: 7}, // six seconds of real time for the agent to start
	{For: 90 * time.Minute, State: 1, Cycle: 500 * time.Millisecond},
	{For: 45 * time.Minute, State: 3, Reason: 102},
	{For: 30 * time.Minute, State: 2},
	{For: 105 * time.Minute, State: 1, Cycle: 450 * time.Millisecond},
	{For: 30 * time.Minute, State: 6},
	{For: 180 * time.Minute, State: 1, Cycle: 410 * time.Millisecond},
}

var category = map[uint16]schemas.StateCategory{1: schemas.StateRunning, 2: schemas.StateSetup, 3: schemas.StateStoppedUnplanned,
	4: schemas.StateStoppedUnplanned, 6: schemas.StatePlannedDown, 7: schemas.StateNotScheduled}

// expected is what the OEE package computes from the script's states and counts,
// with the machine unknown over gap (the agent dead), if given.
func expected(from, to time.Time, gap *oee.Span) oee.Result {
	var in oee.Input
	in.Window, in.Now = oee.Span{Start: from, End: to}, to.Add(24*time.Hour)
	in.IdealCycle, in.MicroStopThreshold = 400*time.Millisecond, 2*time.Minute
	t := simStart
	parts := int64(0)
	for _, s := range shift {
		in.States = append(in.States, oee.StateInterval{Start: t, End: t.Add(s.For), State: category[s.State]})
		if s.Cycle > 0 {
			for k := time.Duration(1); k*s.Cycle <= s.For; k++ {
				parts++
				in.Counts = append(in.Counts, oee.Count{TS: t.Add(k * s.Cycle), Kind: schemas.CounterTotal, N: 1})
				if parts%50 == 0 {
					in.Counts = append(in.Counts, oee.Count{TS: t.Add(k * s.Cycle), Kind: schemas.CounterScrap, N: 1})
				}
			}
		}
		t = t.Add(s.For)
	}
	in.States = append(in.States, oee.StateInterval{Start: t, End: t.Add(24 * time.Hour), State: schemas.StateNotScheduled})
	if gap != nil {
		var cut []oee.StateInterval
		for _, iv := range in.States {
			if iv.Start.Before(gap.Start) {
				a := iv
				if a.End.After(gap.Start) {
					a.End = gap.Start
				}
				cut = append(cut, a)
			}
			if iv.End.After(gap.End) {
				b := iv
				if b.Start.Before(gap.End) {
					b.Start = gap.End
				}
				cut = append(cut, b)
			}
		}
		in.States = cut
	}
	return oee.Compute(in)
}

// apiToken makes a bearer token of tenant with takt-api token create.
func apiToken(t *testing.T, bin string, env []string, tenant string) string {
	t.Helper()
	cmd := exec.Command(filepath.Join(bin, "takt-api"), "token", "create", "-tenant", tenant, "-name", tenant, "-scope", "manage")
	cmd.Env = append(os.Environ(), env...)
	out, err := cmd.Output()
	if err != nil {
		t.Fatal(err)
	}
	return strings.TrimSpace(string(out))
}

// buildBinaries builds the pipeline's programs into a temporary directory.
func buildBinaries(t testing.TB) string {
	t.Helper()
	bin := t.TempDir()
	build := exec.Command("go", "build", "-o", bin+"/", "./edge-agent/cmd/plcsim", "./edge-agent/cmd/takt-agent",
		"./ingest/cmd/takt-ingest", "./ingest/cmd/takt-loadgen", "./aggregator/cmd/takt-aggregator", "./api/cmd/takt-api")
	root, _ := filepath.Abs("../../..")
	build.Dir = root
	build.Env = append(os.Environ(), "GOWORK="+filepath.Join(root, "go.work")) // the binaries are other modules of the workspace
	if out, err := build.CombinedOutput(); err != nil {
		t.Fatalf("go build: %v\n%s", err, out)
	}
	return bin
}

// TestEndToEnd runs the whole pipeline (plcsim → takt-agent over an OPC UA
// subscription, the default, so states arrive only when they change → MQTT →
// takt-ingest bridge → Kafka → sink and takt-aggregator → PostgreSQL → takt-api) on
// a scripted shift, simulated 600 times faster than real time with the PLC's source
// timestamps, and checks that the OEE the API serves for the shift is what the OEE
// package computes from the script, to 1e-9. The second run kills the agent with
// SIGKILL mid-shift and starts it again: the time it was dead is unknown (from where
// its last run got to the first state of the next), the rest exact.
func TestEndToEnd(t *testing.T) {
	bin := buildBinaries(t)
	t.Run("subscribe", func(t *testing.T) { endToEnd(t, bin, e2eRun{traces: true}) })
	t.Run("agent killed mid-shift", func(t *testing.T) { endToEnd(t, bin, e2eRun{kill: true}) })
	// The same shift replayed by an OPC UA server that is not plcsim (node-opcua,
	// testdata/replay-server.js), with the PLC's source timestamps.
	t.Run("node-opcua replay", func(t *testing.T) { endToEnd(t, bin, e2eRun{nodeOPCUA: true}) })
	// The database migrated by an owner that is not a superuser, and every service
	// logged in as its own role (migrations 00018 and 00019).
	t.Run("least privilege", func(t *testing.T) { endToEnd(t, bin, e2eRun{leastPrivilege: true}) })
}

// e2eRun says how endToEnd varies the pipeline.
type e2eRun struct {
	kill           bool // SIGKILL the agent mid-shift
	nodeOPCUA      bool // node-opcua replays the shift instead of plcsim
	leastPrivilege bool // no service is a superuser or the tables' owner
	traces         bool // every program exports traces to an in-process OTLP receiver
}

func endToEnd(t *testing.T, bin string, run e2eRun) {
	ctx := context.Background()
	dir := t.TempDir()
	db := testkit.NewDatabase(t)
	roles := map[string][]string{}
	if run.leastPrivilege {
		lp := testkit.NewLeastPrivilegeDatabase(t)
		db = &lp.Database
		roles["takt-ingest"] = []string{"DATABASE_URL=" + lp.Ingest}
		roles["takt-aggregator"] = []string{"DATABASE_URL=" + lp.Aggregator}
		roles["takt-api"] = []string{"DATABASE_URL=" + lp.API}
		t.Cleanup(func() { checkRoleLimits(t, lp) })
	}
	kill, nodeOPCUA := run.kill, run.nodeOPCUA
	pool := db.Pool(t)
	mq := testkit.Mosquitto(t)
	k := testkit.Kafka(t, testkit.KafkaOptions{Partitions: 2})
	_, err := pool.Exec(ctx, `
WITH tn AS (INSERT INTO tenant VALUES ('e2e', 'E2E') RETURNING tenant_id),
s AS (INSERT INTO site (tenant_id, code, name, time_zone) SELECT tenant_id, 'plant', 'Plant', 'UTC' FROM tn RETURNING tenant_id, id),
a AS (INSERT INTO area (tenant_id, site_id, code, name) SELECT tenant_id, id, 'pack', 'Pack' FROM s RETURNING tenant_id, id),
l AS (INSERT INTO line (tenant_id, area_id, code, name) SELECT tenant_id, id, 'line-1', 'L1' FROM a RETURNING tenant_id, id),
w AS (INSERT INTO work_center (tenant_id, line_id, code, name) SELECT tenant_id, id, 'wc', 'WC' FROM l RETURNING tenant_id, id)
INSERT INTO equipment (tenant_id, work_center_id, code, name, ideal_cycle_time_s, micro_stop_threshold_s)
SELECT tenant_id, id, 'filler-1', 'Filler', 0.4, 120 FROM w`)
	if err != nil {
		t.Fatal(err)
	}

	var script []map[string]any
	for _, s := range shift {
		seg := map[string]any{"for": s.For.String(), "state": s.State, "reason": s.Reason}
		if s.Cycle > 0 {
			seg["cycle"] = s.Cycle.String()
		}
		script = append(script, seg)
	}
	scriptJSON, _ := json.Marshal(script)
	scriptFile := filepath.Join(dir, "shift.json")
	os.WriteFile(scriptFile, scriptJSON, 0o644)
	opcPort, _ := testkit.FreePort()
	apiPort, _ := testkit.FreePort()
	apiAddr := fmt.Sprintf("127.0.0.1:%d", apiPort)

	// Every process on a port of its own, so that the metrics dashboards and rules
	// name can be scraped from each.
	ports := make([]int, 4)
	for i := range ports {
		ports[i], _ = testkit.FreePort()
	}
	agentMetrics, ingestHTTP, aggHTTP, modbusPort := ports[0], ports[1], ports[2], ports[3]
	// Besides OPC UA, plcsim's Modbus server gives the machine's temperature, as a
	// measurement (it does not enter OEE), so that every metric of both drivers is
	// exposed. Not in the killed-agent run: Modbus samples carry the gateway's clock
	// while the simulated PLC's runs 600 times faster from another day, and the
	// agent's lifeline (where a dead run got to) is its newest sample's time.
	modbus := ""
	if !nodeOPCUA && !kill {
		modbus = fmt.Sprintf(`
    modbus:
      - name: plc-mb
        url: tcp://127.0.0.1:%d
        interval: 500ms
        tags:
          - {name: temperature, address: 12, type: float32, byte_order: CDAB}`, modbusPort)
	}
	agentCfg := filepath.Join(dir, "agent.yaml")
	os.WriteFile(agentCfg, []byte(fmt.Sprintf(`agent: {id: gw-e2e, tenant: e2e, metrics_addr: "127.0.0.1:%d", heartbeat: 10ms}
mqtt: {url: %q}
buffer: {dir: %q}
publish: {linger: 100ms}
equipment:
  - site: plant
    area: pack
    line: line-1
    code: filler-1
    opcua:
      - name: plc
        endpoint: opc.tcp://127.0.0.1:%d
        interval: 20ms
        timestamp: source
        tags:
          - {name: state, role: state, namespace_uri: %q, node_id: "s=filler-1.State", states: {1: {state: RUNNING}, 2: {state: SETUP}, 3: {state: STOPPED_UNPLANNED, reason: 100}, 4: {state: STOPPED_UNPLANNED, reason: 1}, 6: {state: PLANNED_DOWN}, 7: {state: NOT_SCHEDULED}}}
          - {name: count_total, role: counter, counter: total, namespace_uri: %q, node_id: "s=filler-1.TotalCount"}
          - {name: count_scrap, role: counter, counter: scrap, namespace_uri: %q, node_id: "s=filler-1.ScrapCount"}%s
`, agentMetrics, mq.URL(), filepath.Join(dir, "buffer"), opcPort, "urn:takt:plcsim", "urn:takt:plcsim", "urn:takt:plcsim", modbus)), 0o644)
	ingestCfg := filepath.Join(dir, "ingest.yaml")
	os.WriteFile(ingestCfg, []byte(fmt.Sprintf("http_addr: 127.0.0.1:%d\n", ingestHTTP)+"timestamps: {max_age: 87600h}\nbridge:\n  client_id: e2e-bridge\n  subscription: plain\n  topics: ['takt/v1/e2e/#']\nsink:\n  linger: 50ms\n"), 0o644)
	aggCfg := filepath.Join(dir, "aggregator.yaml")
	os.WriteFile(aggCfg, []byte(fmt.Sprintf("http_addr: 127.0.0.1:%d\n", aggHTTP)+"recompute_every: 200ms\nlinger: 50ms\n"), 0o644)

	env := []string{"DATABASE_URL=" + db.URL, "TAKT_PII_KEYS=" + testkit.PIIKeys(), "TAKT_KAFKA_BROKERS=" + strings.Join(k.Brokers(), ","), "TAKT_MQTT_URL=" + mq.URL()}
	var otlp *testkit.OTLPReceiver
	if run.traces {
		// The standard variables, as an operator sets them; a quarter of the traces
		// the agent begins are kept (the rest follow their parent's decision).
		otlp = testkit.NewOTLPReceiver(t)
		env = append(env, "OTEL_EXPORTER_OTLP_ENDPOINT="+otlp.URL, "OTEL_BSP_SCHEDULE_DELAY=200",
			"OTEL_TRACES_SAMPLER=parentbased_traceidratio", "OTEL_TRACES_SAMPLER_ARG=0.25")
	}
	var procs []*child
	t.Cleanup(func() {
		for i := len(procs) - 1; i >= 0; i-- {
			procs[i].stop()
		}
		if t.Failed() {
			for _, p := range procs {
				out, _ := os.ReadFile(p.log)
				if len(out) > 3000 {
					out = out[len(out)-3000:]
				}
				t.Logf("%s:\n%s", p.log, out)
			}
		}
	})
	start := func(name string, extra []string, args ...string) *child {
		t.Helper()
		c, err := startChild(filepath.Join(bin, name), filepath.Join(dir, name+".log"), append(append(append([]string{}, env...), roles[name]...), extra...), args...)
		if err != nil {
			t.Fatal(err)
		}
		procs = append(procs, c)
		return c
	}
	start("takt-ingest", nil, "-c", ingestCfg, "all")
	// Until the bridge has subscribed, what the agent publishes has no subscriber.
	if err := waitForLog(ctx, filepath.Join(dir, "takt-ingest.log"), "connected and subscribed", 30*time.Second); err != nil {
		t.Fatal(err)
	}
	start("takt-aggregator", nil, "-c", aggCfg, "run")
	start("takt-api", []string{"TAKT_HTTP_ADDR=" + apiAddr}, "serve")
	if nodeOPCUA {
		testkit.StartNodeScript(t, "testdata/replay-server.js", fmt.Sprint(opcPort), scriptFile, simStart.Format(time.RFC3339), "600")
	} else {
		start("plcsim", nil, "-machines", "1", "-port", fmt.Sprint(modbusPort), "-opcua-port", fmt.Sprint(opcPort), "-script", scriptFile,
			"-start", simStart.Format(time.RFC3339), "-speed", "600")
	}
	agent := start("takt-agent", nil, "run", "-c", agentCfg)
	if kill {
		// Mid-shift (6 s of real time before 06:00, 600× after, plus the start-up)
		// the agent loses its power; it comes back a second (10 minutes) later.
		time.Sleep(6*time.Second + 35*time.Second)
		agent.cmd.Process.Kill()
		<-agent.done
		os.Rename(filepath.Join(dir, "takt-agent.log"), filepath.Join(dir, "takt-agent-killed.log"))
		procs = append(procs, &child{log: filepath.Join(dir, "takt-agent-killed.log"), done: agent.done})
		time.Sleep(time.Second)
		start("takt-agent", nil, "run", "-c", agentCfg)
	}

	token := apiToken(t, bin, env, "e2e")

	from, to := simStart.Add(time.Hour), simStart.Add(9*time.Hour)
	want := expected(from, to, nil)
	var gap *oee.Span
	if kill {
		// Where the dead run got to, by the PLC's clock (its lifeline, in the next
		// run's birth), and where the next run's first state is.
		gap = &oee.Span{}
		deadline := time.Now().Add(time.Minute)
		for {
			err := pool.QueryRow(ctx, `SELECT o.ts, (SELECT min(n.ts) FROM state_observation n WHERE n.tenant_id = o.tenant_id
				AND n.equipment = o.equipment AND n.ts > o.ts AND n.category <> 0)
				FROM state_observation o WHERE o.tenant_id = 'e2e' AND o.equipment = 'filler-1' AND o.category = 0
				AND o.offline_incarnation IS NOT NULL AND o.ts BETWEEN $1 AND $2`, from, to).Scan(&gap.Start, &gap.End)
			if err == nil && !gap.End.IsZero() {
				break
			}
			if time.Now().After(deadline) {
				t.Fatalf("no end of knowledge recorded for the killed agent: %v", err)
			}
			time.Sleep(200 * time.Millisecond)
		}
		if gap.End.Sub(gap.Start) < 5*time.Minute || gap.End.Sub(gap.Start) > 40*time.Minute {
			t.Fatalf("the agent was dead for a second (10 simulated minutes); the unknown stretch is %s to %s", gap.Start, gap.End)
		}
		t.Logf("agent dead from %s to %s (PLC time)", gap.Start.Format(time.TimeOnly), gap.End.Format(time.TimeOnly))
		want = expected(from, to, gap)
	}
	url := fmt.Sprintf("http://%s/api/v1/equipment/filler-1/oee?bucket=hour&from=%s&to=%s", apiAddr, from.Format(time.RFC3339), to.Format(time.RFC3339))
	var got struct{ Total map[string]any }
	deadline := time.Now().Add(3 * time.Minute)
	for {
		got.Total = nil
		req, _ := http.NewRequest("GET", url, nil)
		req.Header.Set("Authorization", "Bearer "+token)
		if resp, err := http.DefaultClient.Do(req); err == nil {
			json.NewDecoder(resp.Body).Decode(&got)
			resp.Body.Close()
		}
		if got.Total != nil && int64(got.Total["total_count"].(float64)) == want.TotalCount &&
			math.Abs(got.Total["planned_time_s"].(float64)-want.PlannedS) < 1e-6 && math.Abs(got.Total["run_time_s"].(float64)-want.RunS) < 1e-6 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("served total %v, want planned %v run %v total %d", got.Total, want.PlannedS, want.RunS, want.TotalCount)
		}
		time.Sleep(500 * time.Millisecond)
	}
	for name, w := range map[string]*float64{"availability": want.Availability, "performance": want.Performance, "quality": want.Quality, "oee": want.OEE, "coverage": want.Coverage} {
		g, ok := got.Total[name].(float64)
		if !ok || w == nil || math.Abs(g-*w) > 1e-9 {
			t.Errorf("%s: served %v, the OEE package computes %v", name, got.Total[name], *w)
		}
	}
	if int64(got.Total["good_count"].(float64)) != want.GoodCount {
		t.Errorf("good: served %v, want %d", got.Total["good_count"], want.GoodCount)
	}
	t.Logf("shift 06:00-14:00: OEE %.6f (A %.6f, P %.6f, Q %.6f), %d parts", *want.OEE, *want.Availability, *want.Performance, *want.Quality, want.TotalCount)
	if otlp != nil {
		checkTraces(t, otlp, fmt.Sprintf("http://%s/api/v1/equipment/filler-1/oee?bucket=day&from=%s&to=%s", apiAddr, from.Format(time.RFC3339), to.Format(time.RFC3339)), token)
	}
	if !nodeOPCUA && !kill {
		// Every metric the Grafana fleet dashboard and the Prometheus rules name is
		// exposed by a real process of the pipeline.
		checkMetricsExist(t, fmt.Sprintf("http://127.0.0.1:%d/metrics", agentMetrics), fmt.Sprintf("http://127.0.0.1:%d/metrics", ingestHTTP),
			fmt.Sprintf("http://127.0.0.1:%d/metrics", aggHTTP), fmt.Sprintf("http://%s/metrics", apiAddr))
	}
}

// checkTraces shows that a sample's way is one trace from the PLC to the database:
// the agent's poll, the envelope built from it, and as the envelope's children its
// MQTT publish and the bridge (MQTT 3.1.1 has no headers: the envelope carries its own
// span's context), then both consumers of what the bridge wrote (the sink, whose COPY
// runs under a batch span of such a trace, and the aggregator, whose SQL does
// likewise); and that an API request carrying a caller's traceparent continues that
// trace, with its SQL as children.
func checkTraces(t *testing.T, otlp *testkit.OTLPReceiver, url, token string) {
	t.Helper()
	const callerTrace, callerSpan = "4bf92f3577b34da6a3ce929d0e0e4736", "00f067aa0ba902b7"
	req, _ := http.NewRequest("GET", url, nil)
	req.Header.Set("Authorization", "Bearer "+token)
	req.Header.Set("traceparent", "00-"+callerTrace+"-"+callerSpan+"-01")
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()

	var report string
	deadline := time.Now().Add(30 * time.Second)
	for {
		spans := otlp.Spans()
		byID := map[string]testkit.Span{}
		children := map[string][]testkit.Span{}
		for _, s := range spans {
			byID[s.SpanID] = s
			children[s.ParentID] = append(children[s.ParentID], s)
		}
		child := func(parent testkit.Span, service, prefix string) (testkit.Span, bool) {
			for _, c := range children[parent.SpanID] {
				if c.Service == service && strings.HasPrefix(c.Name, prefix) && c.TraceID == parent.TraceID {
					return c, true
				}
			}
			return testkit.Span{}, false
		}
		parentOf := func(s testkit.Span, service, prefix string) (testkit.Span, bool) {
			p, ok := byID[s.ParentID]
			return p, ok && p.Service == service && strings.HasPrefix(p.Name, prefix) && p.TraceID == s.TraceID
		}
		chain, copyChain, aggSQL, api := false, false, false, false
		steps := make([]int, 5) // bridge spans with an envelope parent, its publish, its poll; with a sink child, an aggregator child
		for _, b := range spans {
			if b.Service != "takt-ingest" || !strings.HasPrefix(b.Name, "bridge ") {
				continue
			}
			// MQTT 3.1.1 carries no headers: the envelope's traceparent is the envelope's
			// span, so the bridge is its child, as the publish is.
			env, ok1 := parentOf(b, "takt-agent", "envelope")
			_, ok2 := child(env, "takt-agent", "publish ")
			_, ok3 := parentOf(env, "takt-agent", "poll plc")
			sink, ok4 := child(b, "takt-ingest", "consume takt.samples.v1")
			agg, ok5 := child(b, "takt-aggregator", "consume takt.events.v1")
			for i, ok := range []bool{ok1, ok1 && ok2, ok1 && ok2 && ok3, ok4, ok5} {
				if ok {
					steps[i]++
				}
			}
			if ok1 && ok2 && ok3 && ok4 && ok5 {
				chain = true
				if batch, ok := child(sink, "takt-ingest", "sink batch"); ok {
					if _, ok := child(batch, "takt-ingest", "COPY"); ok {
						copyChain = true
					}
				}
				if save, ok := child(agg, "takt-aggregator", "aggregator save"); ok && len(children[save.SpanID]) > 0 {
					aggSQL = true
				}
			}
		}
		// The batch spans under other traces count too: a batch's span is the child of
		// its first record's.
		for _, s := range spans {
			if s.Service == "takt-ingest" && s.Name == "COPY" {
				if batch, ok := parentOf(s, "takt-ingest", "sink batch"); ok {
					if rec, ok := parentOf(batch, "takt-ingest", "consume takt.samples.v1"); ok {
						if _, ok := parentOf(rec, "takt-ingest", "bridge "); ok {
							copyChain = true
						}
					}
				}
			}
			if s.Service == "takt-aggregator" && s.Name != "aggregator save" && s.Attributes["db.system.name"] == "postgresql" {
				if _, ok := parentOf(s, "takt-aggregator", "aggregator save"); ok {
					aggSQL = true
				}
			}
			if s.Service == "takt-api" && s.TraceID == callerTrace && s.ParentID == callerSpan && s.Name == "GET /api/v1/equipment/{code}/oee" {
				for _, c := range children[s.SpanID] {
					api = api || c.Attributes["db.system.name"] == "postgresql"
				}
			}
		}
		report = fmt.Sprintf("%d spans; poll→envelope→{publish, bridge→{sink, aggregator}} chain %v %v, sink COPY under a traced batch %v, aggregator SQL %v, API request continuing the caller's trace with SQL %v",
			len(spans), chain, steps, copyChain, aggSQL, api)
		if chain && copyChain && aggSQL && api {
			t.Log(report)
			return
		}
		if time.Now().After(deadline) {
			names := map[string]int{}
			for _, s := range spans {
				names[s.Service+" "+s.Name]++
			}
			t.Fatalf("traces: %s; spans by service and name: %v", report, names)
		}
		time.Sleep(500 * time.Millisecond)
	}
}

// checkRoleLimits shows, after a least-privilege run, that each service's role could
// do what the pipeline needed and nothing beyond: no tokens, no audit log, no schema
// change, no writing another service's tables, and the API's role sees no row
// without a tenant.
func checkRoleLimits(t *testing.T, lp *testkit.LeastPrivilege) {
	ctx := context.Background()
	for _, c := range []struct {
		role, url, sql string
	}{
		{"ingest", lp.Ingest, `SELECT count(*) FROM api_token`},
		{"ingest", lp.Ingest, `SELECT count(*) FROM audit_log`},
		{"ingest", lp.Ingest, `SELECT count(*) FROM samples`},
		{"ingest", lp.Ingest, `INSERT INTO oee_window (tenant_id) VALUES ('e2e')`},
		{"ingest", lp.Ingest, `SELECT takt_drop_sample_partitions('2100-01-01')`},
		{"ingest", lp.Ingest, `ALTER TABLE samples DISABLE ROW LEVEL SECURITY`},
		{"aggregator", lp.Aggregator, `INSERT INTO samples (tenant_id, equipment, tag, ts, quality, role, agent, seq) VALUES ('e2e', 'x', 'x', now(), 1, 1, 'x', 1)`},
		{"aggregator", lp.Aggregator, `SELECT count(*) FROM api_token`},
		{"aggregator", lp.Aggregator, `UPDATE equipment SET name = 'x'`},
		{"aggregator", lp.Aggregator, `SELECT takt_ensure_sample_partitions('2100-01-01', 1)`},
		{"aggregator", lp.Aggregator, `DROP TABLE oee_window`},
		{"api", lp.API, `SELECT count(*) FROM sink_offset`},
		{"api", lp.API, `DELETE FROM api_token`},
	} {
		conn, err := pgx.Connect(ctx, c.url)
		if err != nil {
			t.Fatal(err)
		}
		_, err = conn.Exec(ctx, c.sql)
		conn.Close(ctx)
		if err == nil || !strings.Contains(err.Error(), "permission denied") && !strings.Contains(err.Error(), "must be owner") {
			t.Errorf("as the %s role, %s: %v, want permission denied", c.role, c.sql, err)
		}
	}
	conn, err := pgx.Connect(ctx, lp.API)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close(ctx)
	var n int
	if _, err := conn.Exec(ctx, `SET ROLE takt_app`); err != nil {
		t.Fatal(err)
	}
	if err := conn.QueryRow(ctx, `SELECT count(*) FROM state_observation`).Scan(&n); err != nil || n != 0 {
		t.Errorf("the API's role as takt_app with no tenant: %d observations (%v), want none", n, err)
	}
}
