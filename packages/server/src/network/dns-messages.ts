import dnsPacket from "dns-packet";

/**
 * DNS messages as the sandboxes' DNS proxy reads and writes them. Pure: unit-tested without sockets.
 *
 * `dns-packet` encodes a header from `flags` alone and ignores a packet's `rcode` field, so every response
 * here is built by `response()`, which puts the rcode into the low four bits of the flags itself.
 */

export const RCODE = { NOERROR: 0, FORMERR: 1, SERVFAIL: 2, NXDOMAIN: 3, NOTIMP: 4, REFUSED: 5 } as const;
export type Rcode = keyof typeof RCODE;

const HEADER_BYTES = 12;
const QR_RESPONSE = 1 << 15;
const OPCODE_QUERY = 0;
/** Without EDNS a UDP answer may not exceed 512 bytes (RFC 1035 §4.2.1). */
const CLASSIC_UDP_LIMIT = 512;
/** The largest EDNS size honoured: what DNS Flag Day 2020 recommends against fragmentation. */
const MAX_UDP_LIMIT = 1232;
/** Flags of a query that carry over into its response. */
const ECHOED_QUERY_FLAGS = dnsPacket.RECURSION_DESIRED | dnsPacket.CHECKING_DISABLED;
/** Flags of an upstream answer that the proxy passes on (not TC: the proxy decides truncation itself). */
const PASSED_ANSWER_FLAGS = dnsPacket.RECURSION_AVAILABLE | dnsPacket.AUTHENTIC_DATA;

/** One question, the only thing of a sandbox's query that ever goes upstream, and how big a reply may be. */
export interface CheckedQuery {
  id: number;
  question: dnsPacket.Question;
  /** RD and CD of the query, echoed in the response. */
  flags: number;
  /** The client's EDNS record, if it sent one (passed upstream with the question, and answered). */
  edns: dnsPacket.OptAnswer | undefined;
  /** The largest UDP response the client accepts. */
  udpLimit: number;
}

/** Why a query is answered without asking anyone, with the rcode it gets. */
export interface RejectedQuery {
  /** Undefined when not even a header could be read: nothing is sent back. */
  id: number | undefined;
  rcode: Rcode;
  /** The query's question, when it had exactly one that could be read (echoed in the refusal). */
  question?: dnsPacket.Question;
  reason: string;
}

/** Query types that only make sense as zone transfers (over TCP, to an authoritative server). */
const TRANSFER_TYPES = new Set(["AXFR", "IXFR"]);

/**
 * Reads a sandbox's query and keeps only what may be forwarded: exactly one question of class IN, no
 * answer or authority records, and at most an EDNS record besides. Anything else is refused the way
 * resolvers refuse it — BIND and Unbound answer FORMERR to a query whose QDCOUNT is not 1, NOTIMP to
 * opcodes other than QUERY, REFUSED to zone transfers — so a second question, a smuggled record or
 * trailing bytes can never reach the upstream: the proxy forwards a query it encodes itself.
 */
export function checkQuery(msg: Buffer): CheckedQuery | RejectedQuery {
  if (msg.length < HEADER_BYTES) return { id: undefined, rcode: "FORMERR", reason: "shorter than a header" };
  const id = msg.readUInt16BE(0);
  const flags = msg.readUInt16BE(2);
  if (flags & QR_RESPONSE) return { id: undefined, rcode: "FORMERR", reason: "a response, not a query" };
  const opcode = (flags >> 11) & 0xf;
  if (opcode !== OPCODE_QUERY) return { id, rcode: "NOTIMP", reason: `opcode ${opcode}` };
  const qdcount = msg.readUInt16BE(4);
  const ancount = msg.readUInt16BE(6);
  const nscount = msg.readUInt16BE(8);
  const arcount = msg.readUInt16BE(10);
  if (qdcount !== 1) return { id, rcode: "FORMERR", reason: `${qdcount} questions` };
  let packet: dnsPacket.DecodedPacket;
  try {
    packet = dnsPacket.decode(msg);
  } catch {
    return { id, rcode: "FORMERR", reason: "undecodable" };
  }
  const question = packet.questions?.[0];
  if (!question) return { id, rcode: "FORMERR", reason: "no readable question" };
  if (dnsPacket.decode.bytes !== msg.length) return { id, rcode: "FORMERR", question, reason: "trailing bytes" };
  if (ancount !== 0 || nscount !== 0) return { id, rcode: "FORMERR", question, reason: "records in a query" };
  const additionals = packet.additionals ?? [];
  const edns = additionals.find((r): r is dnsPacket.OptAnswer => r.type === "OPT");
  if (arcount > 1 || (arcount === 1 && !edns)) {
    return { id, rcode: "FORMERR", question, reason: "additional records other than EDNS" };
  }
  if (question.class !== "IN") return { id, rcode: "REFUSED", question, reason: `class ${question.class}` };
  if (TRANSFER_TYPES.has(question.type)) return { id, rcode: "REFUSED", question, reason: "zone transfer" };
  const udpLimit = edns ? Math.min(MAX_UDP_LIMIT, Math.max(CLASSIC_UDP_LIMIT, edns.udpPayloadSize)) : CLASSIC_UDP_LIMIT;
  return { id, question, flags: flags & ECHOED_QUERY_FLAGS, edns, udpLimit };
}

export function isRejected(q: CheckedQuery | RejectedQuery): q is RejectedQuery {
  return "rcode" in q;
}

export type UpstreamQuestion = Pick<CheckedQuery, "question" | "flags" | "edns">;

/** The query the proxy sends upstream for a checked one: its own id, the one question, the client's EDNS. */
export function upstreamQuery(q: UpstreamQuestion, id: number): Buffer {
  return dnsPacket.encode({
    id,
    type: "query",
    flags: dnsPacket.RECURSION_DESIRED | (q.flags & dnsPacket.CHECKING_DISABLED),
    questions: [q.question],
    additionals: q.edns ? [ednsRecord(q.edns.udpPayloadSize, q.edns.flags)] : [],
  });
}

function ednsRecord(udpPayloadSize: number, flags: number): dnsPacket.OptAnswer {
  return {
    type: "OPT",
    name: ".",
    udpPayloadSize,
    extendedRcode: 0,
    ednsVersion: 0,
    flags: flags & dnsPacket.DNSSEC_OK,
    flag_do: (flags & dnsPacket.DNSSEC_OK) !== 0,
    options: [],
  };
}

/**
 * A response to a client's query: its id and question, the rcode in the header's low four bits. When the
 * encoded answer is bigger than the client accepts over UDP, the records are dropped and TC is set, as a
 * resolver does.
 */
export function response(
  to: { id: number; question?: dnsPacket.Question | undefined; flags?: number; edns?: unknown; udpLimit?: number },
  rcode: Rcode,
  records: { answers?: dnsPacket.Answer[]; authorities?: dnsPacket.Answer[]; flags?: number } = {},
): Buffer {
  const flags =
    QR_RESPONSE |
    dnsPacket.RECURSION_AVAILABLE |
    ((to.flags ?? dnsPacket.RECURSION_DESIRED) & ECHOED_QUERY_FLAGS) |
    ((records.flags ?? 0) & PASSED_ANSWER_FLAGS) |
    RCODE[rcode];
  const packet: dnsPacket.Packet = {
    id: to.id,
    // dns-packet masks the QR bit out of `flags` and sets it from `type`.
    type: "response",
    flags,
    questions: to.question ? [to.question] : [],
    answers: records.answers ?? [],
    authorities: records.authorities ?? [],
    additionals: to.edns ? [ednsRecord(to.udpLimit ?? CLASSIC_UDP_LIMIT, 0)] : [],
  };
  const encoded = dnsPacket.encode(packet);
  if (encoded.length <= (to.udpLimit ?? CLASSIC_UDP_LIMIT)) return encoded;
  return dnsPacket.encode({
    ...packet,
    flags: flags | dnsPacket.TRUNCATED_RESPONSE,
    answers: [],
    authorities: [],
  });
}

const RCODES_BY_NUMBER = new Map<number, Rcode>(Object.entries(RCODE).map(([k, v]) => [v, k as Rcode]));

/** The rcode a response carries (low four bits of its flags), by name when it has one. */
export function rcodeOf(msg: Buffer): Rcode | number {
  const code = msg.readUInt16BE(2) & 0xf;
  return RCODES_BY_NUMBER.get(code) ?? code;
}

/**
 * Reads an upstream answer to the proxy's own query. Only an answer with the proxy's id and the same
 * question counts: anything else (a late answer to another query, a forged datagram) is not an answer.
 */
export function readUpstreamAnswer(
  msg: Buffer,
  id: number,
  question: dnsPacket.Question,
): { rcode: Rcode; packet: dnsPacket.DecodedPacket } | undefined {
  if (msg.length < HEADER_BYTES || msg.readUInt16BE(0) !== id || !(msg.readUInt16BE(2) & QR_RESPONSE)) return;
  let packet: dnsPacket.DecodedPacket;
  try {
    packet = dnsPacket.decode(msg);
  } catch {
    return;
  }
  const q = packet.questions?.[0];
  if (packet.questions?.length !== 1 || !q || normal(q.name) !== normal(question.name) || q.type !== question.type) {
    return;
  }
  // Codes the proxy has no name for (BADVERS and the like) are passed on as a failure of the upstream.
  return { rcode: RCODES_BY_NUMBER.get(msg.readUInt16BE(2) & 0xf) ?? "SERVFAIL", packet };
}

/**
 * The answer records that belong to the question: those of the asked name, and of the names a CNAME
 * chain from it leads to — as far as the chain is in this answer. Records of any other name (an upstream
 * may add them) are neither passed to the sandbox nor admitted to its firewall: the policy allowed the
 * asked name, and an address is only usable because that name resolved to it.
 */
export function answersFor(question: dnsPacket.Question, answers: dnsPacket.Answer[]): dnsPacket.Answer[] {
  const chain = new Set([normal(question.name)]);
  // A chain is at most as long as the answer; each pass adds the targets of CNAMEs already in the chain.
  for (let grew = true; grew; ) {
    grew = false;
    for (const a of answers) {
      if (a.type === "CNAME" && chain.has(normal(a.name)) && !chain.has(normal(a.data))) {
        chain.add(normal(a.data));
        grew = true;
      }
    }
  }
  return answers.filter((a) => a.type !== "OPT" && chain.has(normal(a.name)));
}

/** The IPv4 addresses among records, with their TTLs. */
export function addressesOf(records: dnsPacket.Answer[]): { ip: string; ttlSeconds: number }[] {
  return records
    .filter((a): a is dnsPacket.StringAnswer => a.type === "A")
    .map((a) => ({ ip: a.data, ttlSeconds: a.ttl ?? 60 }));
}

function normal(name: string): string {
  return name.toLowerCase().replace(/\.$/, "");
}
