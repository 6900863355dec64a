// A herd node in Node.js: what the paper's "Node.js may be more appropriate" would build.
//
//   node bench/nodejs/herd.js NAME topology.json [--no-log]
//
// Plain `net` and `fs`, no npm packages. topology.json is written by bench/run.py:
//   {"nodes": {"Welsh": {"host": "127.0.0.1", "port": 12003}, ...},
//    "links": [["Holiday", "Welsh"], ...], "log_dir": "/tmp/..."}
//
// What it does, as our Python node does:
// - IAMAT: the exact AT line (diff = receive time - client time, signed, 9 decimals,
//   computed in BigInt nanoseconds, rounded half to even beyond 9 decimals); the record is
//   kept when newer by (time, server, location) and flooded as CHANGELOC.
// - WHATSAT: the stored AT line, then a fixed Nearby Search JSON with no places
//   (ZERO_RESULTS), framed `...}\n\n`. There is no places provider at all.
// - `? LINE` for anything else, with PROTOCOL.md's field rules (location ranges, time form,
//   radius 0..50, bound 1..20, unknown client).
// - One persistent outbound link per neighbour; the whole state on link-up, then each
//   applied record, batched per event-loop turn. A neighbour linking in wakes our link.
// - One log line per input and output line (fs.createWriteStream, append), unless --no-log.
//
// Handicaps it does NOT carry, compared with the Python node (see README "Performance"):
// no peer authentication (a peer says `HELLO NAME` and is believed), no journal (nothing
// survives a restart), no heartbeats, no line-length limit, deadlines or connection caps,
// no status file, no log escaping or rotation, no places lookup.
"use strict";

const fs = require("fs");
const net = require("net");
const path = require("path");

const NS = 1000000000n;
const WS_TRIM = /^[ \t\n\v\f\r]+|[ \t\n\v\f\r]+$/g;
const WS = /[ \t\n\v\f\r]+/; // ASCII white space only: 0xA0 (latin1 NBSP) is part of a field
const LOCATION = /^([+-])(\d+)(?:\.(\d+))?([+-])(\d+)(?:\.(\d+))?$/;
const TIME = /^(\d+)(?:\.(\d+))?$/;
const RADIUS = /^(\d+)(?:\.(\d+))?$/;
const BOUND = /^\d+$/;
const PLACES_JSON = '{"html_attributions":[],"results":[],"status":"ZERO_RESULTS"}';
const MAX_LINK_BUFFER = 64 * 1024 * 1024;
const SYNC_CHUNK = 5000;

// -- arguments and topology ------------------------------------------------------------

const args = process.argv.slice(2);
const logging = !args.includes("--no-log");
const positional = args.filter((a) => !a.startsWith("--"));
if (positional.length !== 2) {
  process.stderr.write("usage: node herd.js NAME topology.json [--no-log]\n");
  process.exit(2);
}
const NAME = positional[0];
const topology = JSON.parse(fs.readFileSync(positional[1], "utf8"));
if (!(NAME in topology.nodes)) {
  process.stderr.write(`unknown node ${NAME}\n`);
  process.exit(2);
}
const SELF = topology.nodes[NAME];
const neighbours = [];
for (const [a, b] of topology.links) {
  if (a === NAME) neighbours.push(b);
  else if (b === NAME) neighbours.push(a);
}
const knownServers = new Set(Object.keys(topology.nodes));

// -- clock: wall-clock nanoseconds, monotonic between samples ---------------------------

const wallOffset =
  BigInt(Math.round((performance.timeOrigin + performance.now()) * 1000)) * 1000n -
  process.hrtime.bigint();
function nowNs() {
  return process.hrtime.bigint() + wallOffset;
}
function formatNs(ns) {
  return `${ns / NS}.${(ns % NS).toString().padStart(9, "0")}`;
}

// -- log --------------------------------------------------------------------------------

let log = null;
if (logging) {
  const dir = topology.log_dir || "logs";
  fs.mkdirSync(dir, { recursive: true });
  log = fs.createWriteStream(path.join(dir, `${NAME}.log`), {
    flags: "a",
    defaultEncoding: "latin1",
  });
}
function logLine(text) {
  if (log !== null) log.write(`${new Date().toISOString()} ${text}\n`);
}

// -- protocol: pure functions ------------------------------------------------------------

// An exact decimal `intPart[.fracPart]` is at most `max` (a small integer).
function atMost(intPart, fracPart, max) {
  const whole = intPart.replace(/^0+/, "");
  if (whole.length > 3) return false;
  const n = Number(whole || "0");
  if (n !== max) return n < max;
  return !fracPart || /^0*$/.test(fracPart);
}

function validLocation(field) {
  const m = LOCATION.exec(field);
  return m !== null && atMost(m[2], m[3], 90) && atMost(m[5], m[6], 180);
}

// The ordering key of a valid time: [digit count, integer digits, fraction digits].
function timeKey(field) {
  const m = TIME.exec(field);
  if (m === null) return null;
  const whole = m[1].replace(/^0+/, "");
  return [whole.length, whole, (m[2] || "").replace(/0+$/, "")];
}

function cmp(a, b) {
  return a < b ? -1 : a > b ? 1 : 0;
}

// > 0 when record a is newer than record b: (time, server, location), then the tie-breaks.
function compareRecords(a, b) {
  const ka = a.key;
  const kb = b.key;
  return (
    ka[0] - kb[0] ||
    cmp(ka[1], kb[1]) ||
    cmp(ka[2], kb[2]) ||
    cmp(a.server, b.server) ||
    cmp(a.location, b.location) ||
    cmp(a.timeSent, b.timeSent) ||
    cmp(a.timeReceived, b.timeReceived)
  );
}

// `received - sent` in seconds, signed, exactly 9 decimals (half to even beyond).
function formatDiff(receivedNs, timeSent) {
  const dot = timeSent.indexOf(".");
  const whole = dot < 0 ? timeSent : timeSent.slice(0, dot);
  const frac = dot < 0 ? "" : timeSent.slice(dot + 1);
  let d;
  if (frac.length <= 9) {
    d = receivedNs - (BigInt(whole) * NS + BigInt(frac.padEnd(9, "0")));
  } else {
    const scale = 10n ** BigInt(frac.length - 9);
    const exact = receivedNs * scale - BigInt(whole + frac);
    const mag = exact < 0n ? -exact : exact;
    let q = mag / scale;
    const twice = (mag % scale) * 2n;
    if (twice > scale || (twice === scale && q % 2n === 1n)) q += 1n;
    d = exact < 0n ? -q : q;
  }
  const sign = d < 0n ? "-" : "+";
  return sign + formatNs(d < 0n ? -d : d);
}

function receivedNsOf(timeReceived) {
  const [s, f] = timeReceived.split(".");
  return BigInt(s) * NS + BigInt(f);
}

function atLine(r) {
  if (r.at === null) {
    const diff = formatDiff(receivedNsOf(r.timeReceived), r.timeSent);
    r.at = `AT ${r.server} ${diff} ${r.client} ${r.location} ${r.timeSent}\n`;
  }
  return r.at;
}

function changelocLine(r) {
  return `CHANGELOC ${r.client} ${r.location} ${r.timeSent} ${r.timeReceived} ${r.server}\n`;
}

// -- state --------------------------------------------------------------------------------

const store = new Map(); // client -> record

function apply(r) {
  const held = store.get(r.client);
  if (held !== undefined && compareRecords(held, r) >= 0) return false;
  store.set(r.client, r);
  return true;
}

// -- outbound links ----------------------------------------------------------------------

class Link {
  constructor(name) {
    this.name = name;
    this.spec = topology.nodes[name];
    this.socket = null;
    this.up = false;
    this.outbox = [];
    this.flushScheduled = false;
    this.delay = 100;
    this.timer = null;
    this.flushBound = () => this.flush();
  }

  connect() {
    this.timer = null;
    const socket = net.connect({ host: this.spec.host || "127.0.0.1", port: this.spec.port });
    socket.setNoDelay(true);
    this.socket = socket;
    socket.on("connect", () => {
      this.up = true;
      this.delay = 100;
      logLine(`LINK_UP peer=${this.name}`);
      socket.write(`HELLO ${NAME}\n`, "latin1");
      let batch = [];
      let count = 0;
      for (const r of store.values()) {
        batch.push(changelocLine(r));
        count += 1;
        if (batch.length === SYNC_CHUNK) {
          socket.write(batch.join(""), "latin1");
          batch = [];
        }
      }
      batch.push(`SYNCED ${count}\n`);
      socket.write(batch.join(""), "latin1");
      logLine(`LINK_SYNC_SENT peer=${this.name} records=${count}`);
    });
    socket.on("data", () => {}); // the neighbour never answers after HELLO
    socket.on("error", () => {});
    socket.on("close", () => {
      if (this.socket !== socket) return;
      if (this.up) logLine(`LINK_DOWN peer=${this.name}`);
      this.up = false;
      this.socket = null;
      this.outbox = [];
      this.schedule(this.delay * (0.5 + Math.random() / 2));
      this.delay = Math.min(this.delay * 2, 5000);
    });
  }

  schedule(ms) {
    if (this.timer === null && this.socket === null) {
      this.timer = setTimeout(() => this.connect(), ms);
    }
  }

  wake(resync) {
    if (this.socket === null) {
      if (this.timer !== null) clearTimeout(this.timer);
      this.timer = null;
      this.connect();
    } else if (resync && this.up) {
      this.socket.destroy(); // the neighbour lost its state: send ours again
    }
  }

  send(line) {
    if (!this.up) return; // the full sync on link-up covers it
    this.outbox.push(line);
    if (!this.flushScheduled) {
      this.flushScheduled = true;
      setImmediate(this.flushBound);
    }
  }

  flush() {
    this.flushScheduled = false;
    if (this.outbox.length === 0 || this.socket === null) return;
    this.socket.write(this.outbox.join(""), "latin1");
    this.outbox = [];
    if (this.socket.writableLength > MAX_LINK_BUFFER) this.socket.destroy();
  }
}

const links = new Map(neighbours.map((n) => [n, new Link(n)]));
const inbound = new Map(); // neighbour -> its socket to us

function flood(r, exclude) {
  const line = changelocLine(r);
  for (const [name, link] of links) {
    if (name !== exclude) link.send(line);
  }
}

// -- connections ----------------------------------------------------------------------------

let nextConn = 1;

function handleClientLine(conn, line, fields) {
  const n = fields.length;
  const kw = fields[0];
  if (kw === "IAMAT" && n === 4) {
    const key = timeKey(fields[3]);
    if (key !== null && validLocation(fields[2])) {
      const now = nowNs();
      const r = {
        client: fields[1],
        location: fields[2],
        timeSent: fields[3],
        timeReceived: formatNs(now),
        server: NAME,
        key,
        at: null,
      };
      r.at = `AT ${NAME} ${formatDiff(now, r.timeSent)} ${r.client} ${r.location} ${r.timeSent}\n`;
      if (apply(r)) flood(r, null);
      return r.at;
    }
  } else if (kw === "WHATSAT" && n === 4) {
    const radius = RADIUS.exec(fields[2]);
    const bound = fields[3].replace(/^0+/, "");
    if (
      radius !== null &&
      atMost(radius[1], radius[2], 50) &&
      BOUND.test(fields[3]) &&
      bound.length > 0 &&
      bound.length <= 2 &&
      Number(bound) <= 20
    ) {
      const r = store.get(fields[1]);
      if (r !== undefined) return `${atLine(r)}${PLACES_JSON}\n\n`;
    }
  } else if (kw === "HELLO" && n === 2 && neighbours.includes(fields[1])) {
    conn.peer = fields[1];
    const old = inbound.get(conn.peer);
    inbound.set(conn.peer, conn.socket);
    if (old !== undefined && old !== conn.socket) old.destroy();
    logLine(`PEER_IN_UP conn=${conn.id} peer=${conn.peer}`);
    links.get(conn.peer).wake(old !== undefined && old !== conn.socket);
    return "";
  }
  return `? ${line}\n`;
}

function handlePeerLine(conn, line, fields) {
  if (fields[0] === "CHANGELOC" && fields.length === 6) {
    logLine(`PEER_IN peer=${conn.peer} ${line}`);
    const key = timeKey(fields[3]);
    if (key === null || !knownServers.has(fields[5])) return;
    const r = {
      client: fields[1],
      location: fields[2],
      timeSent: fields[3],
      timeReceived: fields[4],
      server: fields[5],
      key,
      at: null,
    };
    if (apply(r)) flood(r, conn.peer);
  } else if (fields[0] === "SYNCED") {
    logLine(`PEER_SYNCED peer=${conn.peer} records=${fields[1]}`);
  }
}

function handleLines(conn, lines) {
  const out = [];
  for (let line of lines) {
    if (line.endsWith("\r")) line = line.slice(0, -1);
    const trimmed = line.replace(WS_TRIM, "");
    if (trimmed === "") continue;
    const fields = trimmed.split(WS);
    if (conn.peer !== null) {
      handlePeerLine(conn, line, fields);
      continue;
    }
    logLine(`IN conn=${conn.id} ${line}`);
    const reply = handleClientLine(conn, line, fields);
    if (reply !== "") {
      out.push(reply);
      logLine(`OUT conn=${conn.id} ${reply.slice(0, reply.indexOf("\n"))}`);
    }
  }
  if (out.length > 0) conn.socket.write(out.join(""), "latin1");
}

const server = net.createServer({ allowHalfOpen: true, noDelay: true }, (socket) => {
  const conn = { id: nextConn++, socket, peer: null, buf: "" };
  socket.setEncoding("latin1"); // one char per byte: every byte is echoed back unchanged
  logLine(`CONN_OPEN conn=${conn.id} from=${socket.remoteAddress}:${socket.remotePort}`);
  socket.on("data", (chunk) => {
    const data = conn.buf + chunk;
    const end = data.lastIndexOf("\n");
    if (end < 0) {
      conn.buf = data;
      return;
    }
    conn.buf = data.slice(end + 1);
    handleLines(conn, data.slice(0, end).split("\n"));
  });
  socket.on("end", () => {
    if (conn.buf !== "") {
      const last = conn.buf;
      conn.buf = "";
      handleLines(conn, [last]);
    }
    socket.end();
  });
  socket.on("error", () => {});
  socket.on("close", () => {
    if (conn.peer !== null && inbound.get(conn.peer) === socket) inbound.delete(conn.peer);
    logLine(`CONN_CLOSE conn=${conn.id}`);
  });
});

server.on("error", (e) => {
  process.stderr.write(`node ${NAME}: ${e.message}\n`);
  process.exit(2);
});

server.listen({ host: SELF.bind || SELF.host || "127.0.0.1", port: SELF.port, backlog: 1024 }, () => {
  logLine(`START node=${NAME} port=${SELF.port} neighbours=${neighbours.join(",")}`);
  process.stderr.write(`node ${NAME}: listening on port ${SELF.port}\n`);
  for (const link of links.values()) link.connect();
});

function shutdown() {
  server.close();
  for (const link of links.values()) {
    if (link.timer !== null) clearTimeout(link.timer);
    if (link.socket !== null) link.socket.destroy();
  }
  setTimeout(() => process.exit(0), 2000).unref();
  if (log !== null) {
    logLine(`STOPPED node=${NAME}`);
    log.end(() => process.exit(0));
  } else {
    process.exit(0);
  }
}
process.on("SIGTERM", shutdown);
process.on("SIGINT", shutdown);
