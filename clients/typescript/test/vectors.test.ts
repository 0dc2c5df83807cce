/**
 * The TypeScript implementation of the sync rules against the golden vectors shared with the
 * Python suite (tests/vectors/, written by tests/vectors/generate.py from the Python
 * implementation). Both suites pass only while both implementations agree exactly.
 */

import { readFileSync } from "node:fs";
import { fileURLToPath } from "node:url";
import { describe, expect, it } from "vitest";

import { HybridClock, encodeHlc, hlc, parseHlc, stamp, successor } from "../src/hlc.js";
import { uuid5 } from "../src/ids.js";
import { applyWrite, isArchived, type FieldVersion, type RecordState, type Write } from "../src/merge.js";
import { TABLES, checkValue, type TableName } from "../src/schema.js";
import { advance, compareVectors, covers, mergeVectors, type VersionVector } from "../src/versionVector.js";
import type { Change, LoggedChange, Scalar } from "../src/wire.js";
import { ReferenceServer } from "./referenceIngest.js";

const VECTORS = new URL("../../../tests/vectors/", import.meta.url);
const load = <T>(name: string): T => JSON.parse(readFileSync(fileURLToPath(new URL(name, VECTORS)), "utf8")) as T;

interface ClockCase {
  name: string;
  start: string;
  steps: Array<{ op: "now" | "receive"; physical_ms: number; remote?: string; result: string }>;
}
interface StampCase {
  sent: string;
  now_ms: number;
  max_skew_ms: number;
  previous: string | null;
  floor: string | null;
  effective: string;
}
interface HlcVectors {
  encode: Array<{ wall_ms: number; logical: number; wire: string }>;
  invalid_wire: string[];
  invalid_pairs: Array<[number, number]>;
  successor: Array<{ hlc: string; successor: string }>;
  clocks: ClockCase[];
  stamp: StampCase[];
}

describe("HLC vectors", () => {
  const vectors = load<HlcVectors>("hlc.json");

  it("encodes and parses the wire form", () => {
    for (const c of vectors.encode) {
      expect(encodeHlc(hlc(c.wall_ms, c.logical))).toBe(c.wire);
      expect(parseHlc(c.wire)).toEqual({ wallMs: c.wall_ms, logical: c.logical });
    }
  });

  it("refuses what is not the wire form", () => {
    for (const text of vectors.invalid_wire) expect(() => parseHlc(text), text).toThrow();
    for (const [wall, logical] of vectors.invalid_pairs) expect(() => hlc(wall, logical)).toThrow(RangeError);
  });

  it("computes successors", () => {
    for (const c of vectors.successor) expect(encodeHlc(successor(parseHlc(c.hlc)))).toBe(c.successor);
  });

  it.each(vectors.clocks.map((c) => [c.name, c] as const))("runs the clock: %s", (_name, c) => {
    let physical = 0;
    const clock = new HybridClock(() => physical, parseHlc(c.start));
    for (const step of c.steps) {
      physical = step.physical_ms;
      const result = step.remote === undefined ? clock.now() : clock.receive(parseHlc(step.remote));
      expect(encodeHlc(result)).toBe(step.result);
      expect(clock.last).toEqual(result);
    }
  });

  it("stamps effective HLCs as the server does", () => {
    const parsed = (text: string | null) => (text === null ? null : parseHlc(text));
    for (const c of vectors.stamp) {
      const effective = stamp(parseHlc(c.sent), {
        nowMs: c.now_ms,
        maxSkewMs: c.max_skew_ms,
        previous: parsed(c.previous),
        floor: parsed(c.floor),
      });
      expect(encodeHlc(effective), JSON.stringify(c)).toBe(c.effective);
    }
  });
});

interface VectorVectors {
  covers: Array<{ vector: VersionVector; device_id: string; seq: number; result: boolean }>;
  advance: Array<{ vector: VersionVector; device_id: string; seq: number; result: VersionVector }>;
  merge: Array<{ vectors: VersionVector[]; result: VersionVector }>;
  compare: Array<{ left: VersionVector; right: VersionVector; result: string }>;
}

describe("version vector vectors", () => {
  const vectors = load<VectorVectors>("version_vectors.json");
  it("covers, advances, merges and compares", () => {
    for (const c of vectors.covers) expect(covers(c.vector, c.device_id, c.seq)).toBe(c.result);
    for (const c of vectors.advance) expect(advance(c.vector, c.device_id, c.seq)).toEqual(c.result);
    for (const c of vectors.merge) expect(mergeVectors(c.vectors)).toEqual(c.result);
    for (const c of vectors.compare) expect(compareVectors(c.left, c.right)).toBe(c.result);
  });
});

interface RecordJson {
  table: string;
  id: string;
  fields: Record<string, FieldVersion>;
  archived: FieldVersion | null;
  is_archived: boolean;
}

type Entry = Pick<LoggedChange, "device_id" | "seq" | "hlc" | "table" | "id" | "op" | "fields">;

function replay(batches: Iterable<Iterable<Entry>>): RecordJson[] {
  const replica = new Map<string, { table: string; id: string; state: RecordState }>();
  for (const batch of batches) {
    for (const entry of batch) {
      const key = `${entry.table}\u0000${entry.id}`;
      const write: Write = { device_id: entry.device_id, seq: entry.seq, hlc: entry.hlc, op: entry.op, fields: entry.fields };
      const known = replica.get(key);
      replica.set(key, { table: entry.table, id: entry.id, state: applyWrite(known?.state, write) });
    }
  }
  return recordsJson(replica.values());
}

function recordsJson(records: Iterable<{ table: string; id: string; state: RecordState }>): RecordJson[] {
  // The order of the Python side: (table, id), fields by name, both by code point.
  const byText = (a: string, b: string) => (a < b ? -1 : a > b ? 1 : 0);
  return [...records]
    .sort((a, b) => byText(a.table, b.table) || byText(a.id, b.id))
    .map(({ table, id, state }) => ({
      table,
      id,
      fields: Object.fromEntries(Object.entries(state.fields).sort(([a], [b]) => byText(a, b))),
      archived: state.archived,
      is_archived: isArchived(state),
    }));
}

function seeded(seed: number): () => number {
  let a = seed >>> 0;
  return () => {
    a = (a + 0x6d2b79f5) | 0;
    let t = Math.imul(a ^ (a >>> 15), 1 | a);
    t = (t + Math.imul(t ^ (t >>> 7), 61 | t)) ^ t;
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
}

function shuffled<T>(items: readonly T[], random: () => number): T[] {
  const copy = [...items];
  for (let i = copy.length - 1; i > 0; i -= 1) {
    const j = Math.floor(random() * (i + 1));
    [copy[i], copy[j]] = [copy[j] as T, copy[i] as T];
  }
  return copy;
}

describe("merge vectors", () => {
  const { cases } = load<{ cases: Array<{ name: string; changes: Entry[]; records: RecordJson[] }> }>("merge.json");

  it.each(cases.map((c) => [c.name, c] as const))("%s", (_name, c) => {
    expect(replay([c.changes])).toEqual(c.records);
    // Order, batching and repetition do not matter (§7.6).
    const random = seeded(c.changes.length + 17);
    for (let round = 0; round < 5; round += 1) {
      const doubled = [...shuffled(c.changes, random), ...shuffled(c.changes, random).slice(0, c.changes.length >> 1)];
      expect(replay([doubled])).toEqual(c.records);
    }
    const pairs: Entry[][] = [];
    for (let i = 0; i < c.changes.length; i += 2) pairs.push(c.changes.slice(i, i + 2));
    expect(replay(pairs)).toEqual(c.records);
  });
});

interface IngestCase {
  name: string;
  max_skew_ms: number;
  pushes: Array<{
    now_ms: number;
    request: { device_id: string; seen: VersionVector; changes: Change[] };
    result: unknown;
  }>;
  log: Entry[];
  records: RecordJson[];
}

describe("ingest vectors: change sets in, log, records and conflicts out", () => {
  const { cases } = load<{ cases: IngestCase[] }>("ingest.json");

  it.each(cases.map((c) => [c.name, c] as const))("%s", (_name, c) => {
    const server = new ReferenceServer(c.max_skew_ms);
    for (const push of c.pushes) {
      expect(server.push(push.request, push.now_ms)).toEqual(push.result);
    }
    expect(server.log).toEqual(c.log);
    const records = [...server.records].map(([key, state]) => {
      const [table = "", id = ""] = key.split("/");
      return { table, id, state };
    });
    expect(recordsJson(records)).toEqual(c.records);
    // Every replica that merges the log holds the server's records, in any order.
    expect(replay([[...c.log].reverse()])).toEqual(c.records);
  });
});

describe("field value vectors", () => {
  const { cases } = load<{ cases: Array<{ table: TableName; field: string; value: Scalar; valid: boolean }> }>("values.json");
  it("accepts and refuses exactly what the server does", () => {
    for (const c of cases) {
      const spec = TABLES[c.table].fields[c.field];
      expect(spec, `${c.table}.${c.field}`).toBeDefined();
      if (spec === undefined) continue;
      expect(checkValue(spec, c.value) === null, JSON.stringify(c).slice(0, 200)).toBe(c.valid);
    }
  });
});

describe("id vectors", () => {
  const { uuid5: cases } = load<{ uuid5: Array<{ namespace: string; name: string; uuid: string }> }>("ids.json");
  it("derives uuid5 ids", () => {
    for (const c of cases) expect(uuid5(c.namespace, c.name)).toBe(c.uuid);
  });
});
