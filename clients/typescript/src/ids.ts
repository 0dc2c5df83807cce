/**
 * Record ids (PROTOCOL.md §2.1): random UUIDs for new records, and name-based `uuid5` ids
 * where two devices must arrive at the same record without talking to each other (lineup
 * rows, app settings, rows of older app versions whose ids are not UUIDs).
 */

const ANY_UUID = /^\{?([0-9a-fA-F]{8})-?([0-9a-fA-F]{4})-?([0-9a-fA-F]{4})-?([0-9a-fA-F]{4})-?([0-9a-fA-F]{12})\}?$/;
const SPELLED_UUID = /^[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12}$/;

/** A new random (version 4) UUID in lowercase canonical form. */
export function randomId(): string {
  return globalThis.crypto.randomUUID().toLowerCase();
}

/** The lowercase canonical form of a UUID written any way (uppercase, no hyphens), or null. */
export function canonicalUuid(text: string): string | null {
  const found = ANY_UUID.exec(text.trim());
  if (found === null) return null;
  return found.slice(1, 6).join("-").toLowerCase();
}

/** `uuid5(namespace, name)` (RFC 9562): SHA-1 over the namespace's bytes and the UTF-8 name. */
export function uuid5(namespace: string, name: string): string {
  const canonical = canonicalUuid(namespace);
  if (canonical === null) throw new TypeError(`not a UUID: ${JSON.stringify(namespace)}`);
  const space = hexToBytes(canonical.replaceAll("-", ""));
  const text = new TextEncoder().encode(name);
  const input = new Uint8Array(space.length + text.length);
  input.set(space, 0);
  input.set(text, space.length);
  const hash = sha1(input).subarray(0, 16);
  hash[6] = ((hash[6] ?? 0) & 0x0f) | 0x50;
  hash[8] = ((hash[8] ?? 0) & 0x3f) | 0x80;
  const hex = Array.from(hash, (byte) => byte.toString(16).padStart(2, "0")).join("");
  return `${hex.slice(0, 8)}-${hex.slice(8, 12)}-${hex.slice(12, 16)}-${hex.slice(16, 20)}-${hex.slice(20)}`;
}

/**
 * The id of a lineup row: `uuid5(match_id, player_id)` (§2.1), so two coaches adding the same
 * player to the same match offline create one row, not two.
 */
export function lineupId(matchId: string, playerId: string): string {
  return uuid5(matchId, canonicalUuid(playerId) ?? playerId);
}

/** The id of an app setting: `uuid5(club_id, "app_settings:" + key)` (§3.12). */
export function appSettingId(clubId: string, key: string): string {
  return uuid5(clubId, `app_settings:${key}`);
}

/**
 * The server id of a local row: its own id when that is a UUID (in canonical form), otherwise
 * `uuid5(club_id, "<table>:<old id>")`, the rule the import tool uses, so a row of an older
 * app version maps to the same record however it reaches the server.
 */
export function stableId(clubId: string, table: string, localId: string | number): string {
  const text = String(localId).trim();
  if (SPELLED_UUID.test(text)) return text.toLowerCase();
  return uuid5(clubId, `${table}:${text}`);
}

function hexToBytes(hex: string): Uint8Array {
  const bytes = new Uint8Array(hex.length / 2);
  for (let i = 0; i < bytes.length; i += 1) bytes[i] = parseInt(hex.slice(2 * i, 2 * i + 2), 16);
  return bytes;
}

// SHA-1 is used only to derive uuid5 ids, as RFC 9562 prescribes; it protects nothing. It is
// computed here because Web Crypto's digest is asynchronous and ids are needed inside
// IndexedDB transactions, which must not await anything but IndexedDB.
function sha1(message: Uint8Array): Uint8Array {
  const bitLength = message.length * 8;
  const padded = new Uint8Array((((message.length + 8) >> 6) + 1) << 6);
  padded.set(message);
  padded[message.length] = 0x80;
  const view = new DataView(padded.buffer);
  view.setUint32(padded.length - 8, Math.floor(bitLength / 2 ** 32));
  view.setUint32(padded.length - 4, bitLength >>> 0);
  let h0 = 0x67452301;
  let h1 = 0xefcdab89;
  let h2 = 0x98badcfe;
  let h3 = 0x10325476;
  let h4 = 0xc3d2e1f0;
  const w = new Uint32Array(80);
  for (let block = 0; block < padded.length; block += 64) {
    for (let i = 0; i < 16; i += 1) w[i] = view.getUint32(block + 4 * i);
    for (let i = 16; i < 80; i += 1) {
      const x = (w[i - 3] ?? 0) ^ (w[i - 8] ?? 0) ^ (w[i - 14] ?? 0) ^ (w[i - 16] ?? 0);
      w[i] = (x << 1) | (x >>> 31);
    }
    let [a, b, c, d, e] = [h0, h1, h2, h3, h4];
    for (let i = 0; i < 80; i += 1) {
      let f: number;
      let k: number;
      if (i < 20) [f, k] = [(b & c) | (~b & d), 0x5a827999];
      else if (i < 40) [f, k] = [b ^ c ^ d, 0x6ed9eba1];
      else if (i < 60) [f, k] = [(b & c) | (b & d) | (c & d), 0x8f1bbcdc];
      else [f, k] = [b ^ c ^ d, 0xca62c1d6];
      const t = (((a << 5) | (a >>> 27)) + f + e + k + (w[i] ?? 0)) >>> 0;
      [e, d, c, b, a] = [d, c, (b << 30) | (b >>> 2), a, t];
    }
    h0 = (h0 + a) >>> 0;
    h1 = (h1 + b) >>> 0;
    h2 = (h2 + c) >>> 0;
    h3 = (h3 + d) >>> 0;
    h4 = (h4 + e) >>> 0;
  }
  const out = new Uint8Array(20);
  const outView = new DataView(out.buffer);
  [h0, h1, h2, h3, h4].forEach((h, i) => outView.setUint32(4 * i, h >>> 0));
  return out;
}
