/** An in-memory sync server for unit tests: the reference ingest behind a SyncTransport. */

import { SyncRejected, SyncUnavailable } from "../src/errors.js";
import type { SyncTransport } from "../src/transport.js";
import type { ConflictRecord, LoggedChange, PullRequest, PullResponse, PushRequest, PushResponse } from "../src/wire.js";
import { ReferenceServer } from "./referenceIngest.js";

export class FakeServer implements SyncTransport {
  readonly ingest = new ReferenceServer(60_000);
  readonly conflictLog: ConflictRecord[] = [];
  nowMs = 1_772_359_200_000;
  maxChanges = 1000;
  /** Failures to serve before answering again, as a flaky network would. */
  failures: Array<"push" | "pull"> = [];
  pushes: PushRequest[] = [];

  async push(request: PushRequest): Promise<PushResponse> {
    if (this.failures[0] === "push") {
      this.failures.shift();
      throw new SyncUnavailable("server answered 503", 503, {}, 0);
    }
    if (request.changes.length > this.maxChanges) {
      throw new SyncRejected(413, { type: "/problems/change-set-too-large", max_changes: this.maxChanges });
    }
    this.pushes.push(request);
    const result = this.ingest.push(request, this.nowMs);
    if ("error" in result) throw new SyncRejected(result.error.status, { type: `/problems/${result.error.code}` });
    const conflicts = result.conflicts.map((c, i): ConflictRecord => ({
      id: `00000000-0000-4000-8000-${String(this.conflictLog.length + i + 1).padStart(12, "0")}`,
      server_seq: this.ingest.log.length,
      table: c.table as ConflictRecord["table"],
      record_id: c.record_id,
      match_id: null,
      field: c.field,
      winner: c.winner,
      loser: c.loser,
      detected_at: new Date(this.nowMs).toISOString(),
      reinstated_seq: null,
    }));
    this.conflictLog.push(...conflicts);
    return { device_id: request.device_id, acked_seq: result.acked_seq, applied: result.applied, duplicates: result.duplicates, cursor: this.ingest.log.length, restamped: result.restamped, conflicts, server_time_ms: this.nowMs };
  }

  async pull(request: PullRequest): Promise<PullResponse> {
    if (this.failures[0] === "pull") {
      this.failures.shift();
      throw new SyncUnavailable("server answered 503", 503, {}, 0);
    }
    const after = this.ingest.log.filter((entry) => entry.server_seq > request.cursor && (request.include_own || entry.device_id !== request.device_id));
    const page = after.slice(0, request.limit) as unknown as LoggedChange[];
    const hasMore = after.length > request.limit;
    const cursor = hasMore ? (page.at(-1)?.server_seq ?? request.cursor) : Math.max(this.ingest.log.length, request.cursor);
    const conflicts = this.conflictLog.filter((c) => c.server_seq > request.cursor && c.server_seq <= cursor);
    return { changes: page, conflicts, cursor, has_more: hasMore, server_time_ms: this.nowMs };
  }

  async conflicts(): Promise<ConflictRecord[]> {
    return this.conflictLog;
  }

  async reinstate(): Promise<never> {
    throw new Error("not used");
  }
}
