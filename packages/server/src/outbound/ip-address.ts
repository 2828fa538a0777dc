/**
 * IP addresses as bytes: 4 for IPv4, 16 for IPv6. Decisions about addresses are made on these bytes,
 * never on text, so that every spelling of one address (`::ffff:127.0.0.1`, `::ffff:7f00:1`,
 * `0:0:0:0:0:ffff:7f00:1`) is the same thing.
 */
export type IpBytes = Uint8Array;

/** A network: the address's first `bits` bits. */
export interface IpPrefix {
  bytes: IpBytes;
  bits: number;
}

const DIGITS = "0123456789";
const HEX = "0123456789abcdef";

/** Dotted-quad IPv4 in its canonical form (what DNS answers and WHATWG URLs produce): four decimals 0-255. */
function parseIpv4(text: string): IpBytes | null {
  const parts = text.split(".");
  if (parts.length !== 4) return null;
  const bytes = new Uint8Array(4);
  for (const [i, part] of parts.entries()) {
    if (part.length === 0 || part.length > 3) return null;
    // A leading zero would be octal to inet_aton and decimal to others: refuse the ambiguity.
    if (part.length > 1 && part[0] === "0") return null;
    let value = 0;
    for (const ch of part) {
      const digit = DIGITS.indexOf(ch);
      if (digit < 0) return null;
      value = value * 10 + digit;
    }
    if (value > 255) return null;
    bytes[i] = value;
  }
  return bytes;
}

/** RFC 4291 text: up to eight groups of 1-4 hex digits, at most one `::`, optionally a dotted-quad tail. */
function parseIpv6(text: string): IpBytes | null {
  const halves = text.split("::");
  if (halves.length > 2) return null;
  const groupsOf = (half: string): number[] | null => {
    if (half === "") return [];
    const groups: number[] = [];
    const pieces = half.split(":");
    for (const [i, piece] of pieces.entries()) {
      if (i === pieces.length - 1 && piece.includes(".")) {
        const v4 = parseIpv4(piece);
        if (!v4) return null;
        groups.push((v4[0]! << 8) | v4[1]!, (v4[2]! << 8) | v4[3]!);
        continue;
      }
      if (piece.length === 0 || piece.length > 4) return null;
      let value = 0;
      for (const ch of piece.toLowerCase()) {
        const digit = HEX.indexOf(ch);
        if (digit < 0) return null;
        value = value * 16 + digit;
      }
      groups.push(value);
    }
    return groups;
  };
  const head = groupsOf(halves[0]!);
  const tail = halves.length === 2 ? groupsOf(halves[1]!) : [];
  if (!head || !tail) return null;
  // A dotted-quad tail is only allowed at the very end.
  if (halves.length === 2 && halves[0]!.includes(".")) return null;
  const count = head.length + tail.length;
  if (halves.length === 2 ? count > 7 : count !== 8) return null;
  const groups = [...head, ...Array<number>(8 - count).fill(0), ...tail];
  const bytes = new Uint8Array(16);
  for (const [i, group] of groups.entries()) {
    bytes[2 * i] = group >> 8;
    bytes[2 * i + 1] = group & 0xff;
  }
  return bytes;
}

/**
 * An address's bytes from its text (`1.2.3.4`, `::1`, `[::1]`, `fe80::1%eth0`), or null when the text is
 * not an IP address. A zone id is dropped: it picks an interface, not another address.
 */
export function parseIpAddress(text: string): IpBytes | null {
  let t = text;
  if (t.startsWith("[") && t.endsWith("]")) t = t.slice(1, -1);
  if (t.includes(":")) {
    const zone = t.indexOf("%");
    return parseIpv6(zone >= 0 ? t.slice(0, zone) : t);
  }
  return parseIpv4(t);
}

/** `10.0.0.0/8`, `fc00::/7`, or a single address (all its bits). */
export function parseIpPrefix(text: string): IpPrefix {
  const slash = text.indexOf("/");
  const bytes = parseIpAddress(slash >= 0 ? text.slice(0, slash) : text);
  if (!bytes) throw new Error(`${text} is not an IP address or network`);
  const bits = slash >= 0 ? Number(text.slice(slash + 1)) : bytes.length * 8;
  if (!Number.isInteger(bits) || bits < 0 || bits > bytes.length * 8) throw new Error(`${text}: bad prefix length`);
  return { bytes, bits };
}

/** Whether the address is inside the network (an IPv4 address is never inside an IPv6 network). */
export function prefixContains(prefix: IpPrefix, address: IpBytes): boolean {
  if (prefix.bytes.length !== address.length) return false;
  for (let bit = 0; bit < prefix.bits; bit += 8) {
    const i = bit / 8;
    const mask = prefix.bits - bit >= 8 ? 0xff : (0xff << (8 - (prefix.bits - bit))) & 0xff;
    if ((prefix.bytes[i]! & mask) !== (address[i]! & mask)) return false;
  }
  return true;
}

/** The canonical text of an address (`127.0.0.1`, `::ffff:7f00:1`), for connecting and for messages. */
export function formatIpAddress(bytes: IpBytes): string {
  if (bytes.length === 4) return bytes.join(".");
  const groups = Array.from({ length: 8 }, (_, i) => (bytes[2 * i]! << 8) | bytes[2 * i + 1]!);
  // RFC 5952: the longest run (of two or more) of zero groups becomes `::`.
  let bestStart = -1;
  let bestLength = 1;
  for (let i = 0; i < 8; ) {
    if (groups[i] !== 0) {
      i++;
      continue;
    }
    let j = i;
    while (j < 8 && groups[j] === 0) j++;
    if (j - i > bestLength) {
      bestStart = i;
      bestLength = j - i;
    }
    i = j;
  }
  const hex = (gs: number[]) => gs.map((g) => g.toString(16)).join(":");
  if (bestStart < 0) return hex(groups);
  return `${hex(groups.slice(0, bestStart))}::${hex(groups.slice(bestStart + bestLength))}`;
}
