/**
 * Hybrid logical clocks (PROTOCOL.md §2.5, §4).
 *
 * An HLC timestamp is a pair `(wallMs, logical)`. It never goes backwards on one replica, it
 * stays close to physical time, and it respects causality: once a replica has received a
 * timestamp `t`, every timestamp it issues afterwards is greater than `t`. That is what lets
 * "an edit made after seeing another edit" win over it whatever the wall clocks say.
 *
 * On the wire an HLC is a fixed-width string, `"<wallMs:15 digits>-<logical:5 digits>"`, so
 * comparing two wire strings with `<` gives the same order as comparing the pairs.
 */

/** The largest logical counter; the next tick borrows a millisecond instead (§4.1). */
export const MAX_LOGICAL = 99_999;
const MAX_WALL_MS = 10 ** 15;
const WIRE = /^([0-9]{15})-([0-9]{5})$/;

/** A hybrid logical timestamp, ordered by `(wallMs, logical)`. */
export interface Hlc {
  readonly wallMs: number;
  readonly logical: number;
}

/** The zero HLC, `000000000000000-00000`: what a clock starts from. */
export const ZERO_HLC: Hlc = Object.freeze({ wallMs: 0, logical: 0 });

/** An HLC, checked: `0 ≤ wallMs < 10^15` and `0 ≤ logical ≤ 99999`, both integers. */
export function hlc(wallMs: number, logical = 0): Hlc {
  if (!Number.isSafeInteger(wallMs) || wallMs < 0 || wallMs >= MAX_WALL_MS) {
    throw new RangeError(`HLC wall time out of range: ${wallMs}`);
  }
  if (!Number.isInteger(logical) || logical < 0 || logical > MAX_LOGICAL) {
    throw new RangeError(`HLC logical counter out of range: ${logical}`);
  }
  return Object.freeze({ wallMs, logical });
}

/** The wire form: fixed width, so that string order is timestamp order. */
export function encodeHlc(value: Hlc): string {
  return String(value.wallMs).padStart(15, "0") + "-" + String(value.logical).padStart(5, "0");
}

/** Parse the wire form; throws `SyntaxError` on anything else. */
export function parseHlc(text: string): Hlc {
  const found = WIRE.exec(text);
  if (found === null) {
    throw new SyntaxError(`not an HLC: ${JSON.stringify(text)}`);
  }
  return hlc(Number(found[1]), Number(found[2]));
}

/** True when `text` is an HLC in wire form. */
export function isHlcText(text: string): boolean {
  return WIRE.test(text);
}

/** Negative, zero or positive as `a` sorts before, with or after `b`. */
export function compareHlc(a: Hlc, b: Hlc): number {
  return a.wallMs !== b.wallMs ? a.wallMs - b.wallMs : a.logical - b.logical;
}

/** The greater of two timestamps. */
export function maxHlc(a: Hlc, b: Hlc): Hlc {
  return compareHlc(a, b) >= 0 ? a : b;
}

/** The smaller of two timestamps. */
export function minHlc(a: Hlc, b: Hlc): Hlc {
  return compareHlc(a, b) <= 0 ? a : b;
}

/** The smallest timestamp greater than `value` (§4.1). */
export function successor(value: Hlc): Hlc {
  if (value.logical < MAX_LOGICAL) {
    return hlc(value.wallMs, value.logical + 1);
  }
  // Borrow a millisecond rather than overflow the fixed-width counter.
  return hlc(value.wallMs + 1, 0);
}

/**
 * The clock of one replica. Physical time comes from the injected `nowMs`, so tests and the
 * golden vectors control it.
 *
 * Invariant: every timestamp returned is strictly greater than every timestamp this clock
 * returned or received before. Persist {@link HybridClock.last} with the outbox so the clock
 * never goes back across restarts, even if the device's wall clock is set back.
 */
export class HybridClock {
  #last: Hlc;
  readonly #nowMs: () => number;

  constructor(nowMs: () => number, last: Hlc = ZERO_HLC) {
    this.#nowMs = nowMs;
    this.#last = last;
  }

  /** The greatest timestamp issued or received so far. */
  get last(): Hlc {
    return this.#last;
  }

  /** A timestamp for a local change; call once per change and never re-stamp it. */
  now(): Hlc {
    const physical = Math.floor(this.#nowMs());
    this.#last = physical > this.#last.wallMs ? hlc(physical, 0) : successor(this.#last);
    return this.#last;
  }

  /** Merge a timestamp learned from the server; later local changes sort after it. */
  receive(remote: Hlc): Hlc {
    const physical = Math.floor(this.#nowMs());
    const latest = maxHlc(this.#last, remote);
    this.#last = physical > latest.wallMs ? hlc(physical, 0) : successor(latest);
    return this.#last;
  }
}

/** What {@link stamp} needs besides the sent HLC (§4.2). */
export interface StampContext {
  /** The server's wall clock, epoch milliseconds. */
  readonly nowMs: number;
  /** The server's `MAX_CLOCK_SKEW_MS`. */
  readonly maxSkewMs: number;
  /** The effective HLC of the same device's previous stored change, if any. */
  readonly previous: Hlc | null;
  /** The greatest effective HLC stored in the club so far, if any. */
  readonly floor: Hlc | null;
}

/**
 * The effective HLC the server records for a change (§4.2). Clients never stamp; this is
 * here so the conformance vectors can check the rule in both languages.
 */
export function stamp(sent: Hlc, context: StampContext): Hlc {
  let ceiling = hlc(context.nowMs + context.maxSkewMs, 0);
  if (context.floor !== null) {
    ceiling = maxHlc(ceiling, successor(context.floor));
  }
  let effective = minHlc(sent, ceiling);
  if (context.previous !== null && compareHlc(effective, context.previous) <= 0) {
    effective = successor(context.previous);
  }
  return effective;
}
