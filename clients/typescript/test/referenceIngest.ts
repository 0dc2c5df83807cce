/**
 * The server's handling of a change set (PROTOCOL.md §5.3 steps 5–7), rebuilt from the
 * client's pure rules (stamp, applyWrite, conflictsOf), so the golden vectors can check that
 * those rules agree with the server's exactly. Validation is left out: the vectors only push
 * valid changes, and the field rules have their own vectors.
 */

import { encodeHlc, maxHlc, parseHlc, stamp, type Hlc } from "../src/hlc.js";
import { applyWrite, conflictsOf, type FieldVersion, type RecordState } from "../src/merge.js";
import type { Change, PushRequest } from "../src/wire.js";

interface Stored {
  readonly sentHlc: string;
  readonly hlc: string;
  readonly change: Change;
}

export interface IngestConflict {
  table: string;
  record_id: string;
  field: string;
  winner: FieldVersion;
  loser: FieldVersion;
}

export type IngestResult =
  | {
      acked_seq: number;
      applied: number;
      duplicates: number;
      restamped: Array<{ seq: number; hlc: string }>;
      conflicts: IngestConflict[];
    }
  | { error: { status: number; code: string } };

export interface LogEntry {
  server_seq: number;
  device_id: string;
  seq: number;
  hlc: string;
  table: string;
  id: string;
  op: string;
  fields: Record<string, unknown>;
}

const sameFields = (a: Change["fields"], b: Change["fields"]): boolean => {
  const keys = Object.keys(a);
  return (
    keys.length === Object.keys(b).length &&
    keys.every((k) => Object.hasOwn(b, k) && typeof a[k] === typeof b[k] && a[k] === b[k])
  );
};

export class ReferenceServer {
  readonly records = new Map<string, RecordState>();
  readonly log: LogEntry[] = [];
  readonly #devices = new Map<string, { lastSeq: number; lastHlc: Hlc | null }>();
  readonly #stored = new Map<string, Map<number, Stored>>();
  #clubMax: Hlc | null = null;

  constructor(readonly maxSkewMs: number) {}

  push(request: PushRequest, nowMs: number): IngestResult {
    const device = this.#devices.get(request.device_id) ?? { lastSeq: 0, lastHlc: null };
    const stored = this.#stored.get(request.device_id) ?? new Map<number, Stored>();
    const restamped: Array<{ seq: number; hlc: string }> = [];
    let duplicates = 0;
    const fresh: Change[] = [];
    for (const change of request.changes) {
      if (change.seq > device.lastSeq) {
        fresh.push(change);
        continue;
      }
      const known = stored.get(change.seq);
      const same =
        known !== undefined &&
        known.sentHlc === change.hlc &&
        known.change.table === change.table &&
        known.change.id === change.id &&
        known.change.op === change.op &&
        sameFields(known.change.fields, change.fields);
      if (!same) return { error: { status: 409, code: "sequence-reused" } };
      duplicates += 1;
      if (known.hlc !== known.sentHlc) restamped.push({ seq: change.seq, hlc: known.hlc });
    }
    if (fresh.length > 0 && fresh[0]?.seq !== device.lastSeq + 1) {
      return { error: { status: 409, code: "sequence-gap" } };
    }
    // Work on copies: nothing is kept unless the whole set goes through.
    const records = new Map(this.records);
    let lastHlc = device.lastHlc;
    let clubMax = this.#clubMax;
    const conflicts: IngestConflict[] = [];
    const accepted: Array<{ change: Change; hlc: string }> = [];
    for (const change of fresh) {
      const key = `${change.table}/${change.id}`;
      const current = records.get(key);
      const effective = stamp(parseHlc(change.hlc), {
        nowMs,
        maxSkewMs: this.maxSkewMs,
        previous: lastHlc,
        floor: clubMax,
      });
      lastHlc = effective;
      clubMax = clubMax === null ? effective : maxHlc(clubMax, effective);
      const hlc = encodeHlc(effective);
      const write = { device_id: request.device_id, seq: change.seq, hlc, op: change.op, fields: change.fields };
      for (const found of conflictsOf(current, write, request.seen)) {
        conflicts.push({ table: change.table, record_id: change.id, ...found });
      }
      records.set(key, applyWrite(current, write));
      if (hlc !== change.hlc) restamped.push({ seq: change.seq, hlc });
      accepted.push({ change, hlc });
    }
    for (const [key, state] of records) this.records.set(key, state);
    for (const { change, hlc } of accepted) {
      stored.set(change.seq, { sentHlc: change.hlc, hlc, change });
      this.log.push({
        server_seq: this.log.length + 1,
        device_id: request.device_id,
        seq: change.seq,
        hlc,
        table: change.table,
        id: change.id,
        op: change.op,
        fields: { ...change.fields },
      });
    }
    this.#stored.set(request.device_id, stored);
    const last = accepted.at(-1);
    if (last !== undefined) this.#devices.set(request.device_id, { lastSeq: last.change.seq, lastHlc });
    this.#clubMax = clubMax;
    return {
      acked_seq: last?.change.seq ?? device.lastSeq,
      applied: accepted.length,
      duplicates,
      restamped,
      conflicts,
    };
  }
}
