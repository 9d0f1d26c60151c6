// An OPC UA server that is not plcsim (node-opcua) replaying a scripted shift with
// the PLC's source timestamps, for the end-to-end test:
//   node replay-server.js PORT SCRIPT_JSON SIM_START SPEED
// SCRIPT_JSON is the end-to-end test's script: [{"for":"1h0m0s","state":7,"cycle":"500ms"}, ...].
// The simulated clock starts at SIM_START (RFC 3339) and runs SPEED times faster
// than real time. Nodes, as plcsim names them, in namespace urn:takt:plcsim:
// s=filler-1.State (UInt16), s=filler-1.TotalCount and s=filler-1.ScrapCount (UInt32,
// one part in fifty is scrap). Every change carries the simulated time it happened
// at as its source timestamp. After the script the machine is not scheduled (7).
// It prints "READY <endpoint>" once listening.
const { OPCUAServer } = require("node-opcua-server");
const { Variant, DataType } = require("node-opcua-variant");
const { StatusCodes } = require("node-opcua-status-code");

const port = parseInt(process.argv[2], 10);
const script = JSON.parse(require("fs").readFileSync(process.argv[3], "utf8"));
const simStart = Date.parse(process.argv[4]);
const speed = parseFloat(process.argv[5]);

// Go durations as the test writes them: 1h30m0s, 500ms, 15m0s.
function ms(d) {
  if (!d) return 0;
  let total = 0;
  const re = /([0-9.]+)(h|ms|m|s)/g;
  let m;
  while ((m = re.exec(d)) !== null) {
    total += parseFloat(m[1]) * { h: 3600e3, m: 60e3, s: 1e3, ms: 1 }[m[2]];
  }
  return total;
}
const segs = [];
let at = simStart;
for (const s of script) {
  segs.push({ start: at, end: at + ms(s.for), state: s.state, cycle: ms(s.cycle) });
  at += ms(s.for);
}
const scriptEnd = at;

// partTime is when the k-th part (from 1) was made.
function partTime(k) {
  for (const s of segs) {
    if (s.cycle <= 0) continue;
    const n = Math.floor((s.end - s.start) / s.cycle);
    if (k <= n) return s.start + k * s.cycle;
    k -= n;
  }
  return scriptEnd;
}

// The machine at simulated time t: its state and since when, the parts made (and
// when the last one was), the scrap parts (and when the last one was).
function machine(t) {
  let parts = 0, state = 7, since = scriptEnd;
  for (const s of segs) {
    if (t >= s.start && t < s.end) { state = s.state; since = s.start; }
    if (s.cycle > 0 && t >= s.start) parts += Math.floor((Math.min(t, s.end) - s.start) / s.cycle);
  }
  const scrap = Math.floor(parts / 50);
  return { state, since, parts, lastPart: parts ? partTime(parts) : simStart, scrap, lastScrap: scrap ? partTime(scrap * 50) : simStart };
}

(async () => {
  const server = new OPCUAServer({ port, hostname: "127.0.0.1", allowAnonymous: true });
  await server.initialize();
  const addressSpace = server.engine.addressSpace;
  const ns = addressSpace.registerNamespace("urn:takt:plcsim");
  const add = (name, dataType) => ns.addVariable({
    organizedBy: addressSpace.rootFolder.objects, browseName: name, nodeId: "s=" + name, dataType,
    minimumSamplingInterval: 10, value: { dataType: DataType[dataType], value: 0 },
  });
  const stateVar = add("filler-1.State", "UInt16");
  const totalVar = add("filler-1.TotalCount", "UInt32");
  const scrapVar = add("filler-1.ScrapCount", "UInt32");
  const t0 = Date.now();
  let last = { state: -1, parts: -1, scrap: -1 };
  const tick = () => {
    const now = simStart + (Date.now() - t0) * speed;
    const m = machine(now);
    if (m.state !== last.state) {
      stateVar.setValueFromSource(new Variant({ dataType: DataType.UInt16, value: m.state }), StatusCodes.Good, new Date(m.since));
    }
    if (m.parts !== last.parts) {
      totalVar.setValueFromSource(new Variant({ dataType: DataType.UInt32, value: m.parts }), StatusCodes.Good, new Date(m.lastPart));
    }
    if (m.scrap !== last.scrap) {
      scrapVar.setValueFromSource(new Variant({ dataType: DataType.UInt32, value: m.scrap }), StatusCodes.Good, new Date(m.lastScrap));
    }
    last = m;
  };
  tick();
  setInterval(tick, 5);
  await server.start();
  console.log("READY " + server.getEndpointUrl());
})().catch((err) => {
  console.error(err);
  process.exit(1);
});
