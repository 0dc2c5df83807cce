/**
 * The checks a local edit must pass before it enters the outbox. They mirror the server's
 * (PROTOCOL.md §5.3 steps 4 and 7), so a change the server would refuse is refused at once,
 * on the touchline, instead of blocking the outbox later: the server refuses a change set as
 * a whole, and every change after a bad one would wait behind it.
 */

import { sameValue, type RecordState } from "./merge.js";
import { checkValue, isCanonicalUuid, isTableName, TABLES, type TableSpec } from "./schema.js";
import type { Fields, Op } from "./wire.js";

/** A local edit the server would refuse; nothing was recorded. */
export class InvalidChange extends Error {
  override readonly name = "InvalidChange";
  constructor(
    message: string,
    /** One line per problem, `field: reason`. */
    readonly problems: readonly string[] = [message],
  ) {
    super(message);
  }
}

/**
 * Throw {@link InvalidChange} unless the edit is valid against the record's `current` state
 * (as the device sees it, pending changes included; `null` when the record is unknown).
 */
export function checkEdit(table: string, id: string, op: Op, fields: Fields, current: RecordState | null): void {
  if (!isTableName(table)) throw new InvalidChange(`unknown table ${JSON.stringify(table)}`);
  if (!isCanonicalUuid(id)) throw new InvalidChange(`record ids are lowercase canonical UUIDs, not ${JSON.stringify(id)}`);
  const where = `${table} ${id}`;
  if (op !== "upsert") {
    if (Object.keys(fields).length > 0) throw new InvalidChange(`${op} carries no fields`);
    if (current === null) throw new InvalidChange(`cannot ${op} ${where}: no such record`);
    return;
  }
  const spec = TABLES[table];
  const problems = fieldProblems(spec, fields);
  if (current === null) {
    for (const [name, fieldSpec] of Object.entries(spec.fields)) {
      if (fieldSpec.required === true && (fields[name] === undefined || fields[name] === null)) {
        problems.push(`${name}: required to create the record`);
      }
    }
  } else {
    for (const [name, value] of Object.entries(fields)) {
      const existing = Object.hasOwn(current.fields, name) ? current.fields[name] : undefined;
      if (spec.fields[name]?.immutable === true && existing !== undefined && !sameValue(existing.value, value)) {
        problems.push(`${name}: cannot change once set`);
      }
    }
  }
  if (problems.length > 0) throw new InvalidChange(`${where}: ${problems.join("; ")}`, problems);
}

function fieldProblems(spec: TableSpec, fields: Fields): string[] {
  const problems: string[] = [];
  for (const [name, value] of Object.entries(fields)) {
    const fieldSpec = Object.hasOwn(spec.fields, name) ? spec.fields[name] : undefined;
    const problem = fieldSpec === undefined ? "unknown field" : checkValue(fieldSpec, value);
    if (problem !== null) problems.push(`${name}: ${problem}`);
  }
  return problems;
}
