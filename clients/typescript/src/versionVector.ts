/**
 * Version vectors (PROTOCOL.md §2.6, §5.4): what a replica has integrated, as the highest
 * sequence per device.
 *
 * Every device numbers its own changes densely from 1 and the server keeps each device's
 * changes in that order, so "device d up to seq n" names exactly which of d's changes a
 * replica holds. A push states its author's vector as `seen`; the server uses it to tell a
 * causal overwrite ("I saw your value and changed it") from a real conflict.
 */

/** Device id to the highest sequence integrated from it; an absent device means 0. */
export type VersionVector = Readonly<Record<string, number>>;

/** How two version vectors relate. */
export type Causality = "equal" | "before" | "after" | "concurrent";

function entry(vector: VersionVector, deviceId: string): number {
  // Own-property lookup only: a device id such as "constructor" must not reach the prototype.
  return Object.hasOwn(vector, deviceId) ? (vector[deviceId] ?? 0) : 0;
}

/** True when the change `(deviceId, seq)` is part of what `vector` describes. */
export function covers(vector: VersionVector, deviceId: string, seq: number): boolean {
  return entry(vector, deviceId) >= seq;
}

/** The vector after integrating `(deviceId, seq)`; never moves an entry backwards. */
export function advance(vector: VersionVector, deviceId: string, seq: number): VersionVector {
  if (seq <= entry(vector, deviceId)) {
    return vector;
  }
  return { ...vector, [deviceId]: seq };
}

/** The least vector covering all of `vectors` (entry-wise maximum). */
export function mergeVectors(vectors: Iterable<VersionVector>): VersionVector {
  const merged: Record<string, number> = {};
  for (const vector of vectors) {
    for (const [deviceId, seq] of Object.entries(vector)) {
      if (seq > entry(merged, deviceId)) {
        merged[deviceId] = seq;
      }
    }
  }
  return merged;
}

/** Whether `left` happened before, after, equal to or concurrently with `right`. */
export function compareVectors(left: VersionVector, right: VersionVector): Causality {
  const devices = new Set([...Object.keys(left), ...Object.keys(right)]);
  let leftAhead = false;
  let rightAhead = false;
  for (const deviceId of devices) {
    const l = entry(left, deviceId);
    const r = entry(right, deviceId);
    leftAhead ||= l > r;
    rightAhead ||= r > l;
  }
  if (leftAhead && rightAhead) return "concurrent";
  if (leftAhead) return "after";
  if (rightAhead) return "before";
  return "equal";
}

/** True when both vectors describe the same knowledge (zero entries equal absent ones). */
export function sameVector(left: VersionVector, right: VersionVector): boolean {
  return compareVectors(left, right) === "equal";
}
