import dnsPacket from "dns-packet";
import { describe, expect, it } from "vitest";
import {
  answersFor,
  checkQuery,
  isRejected,
  rcodeOf,
  readUpstreamAnswer,
  response,
  upstreamQuery,
} from "./dns-messages.js";

const question = (name: string, type: dnsPacket.RecordType = "A"): dnsPacket.Question => ({
  type,
  name,
  class: "IN",
});

function query(packet: Partial<dnsPacket.Packet>): Buffer {
  return dnsPacket.encode({
    id: 4242,
    type: "query",
    flags: dnsPacket.RECURSION_DESIRED,
    questions: [question("allowed.test")],
    ...packet,
  });
}

const a = (name: string, data: string): dnsPacket.Answer => ({ type: "A", name, ttl: 60, class: "IN", data });
const cname = (name: string, data: string): dnsPacket.Answer => ({ type: "CNAME", name, ttl: 60, class: "IN", data });

describe("DNS responses", () => {
  it("carry the rcode they mean in the header (dns-packet alone would send NOERROR)", () => {
    // What the proxy used to rely on: dns-packet ignores `rcode` when it encodes.
    const naive = dnsPacket.encode({ id: 1, type: "response", rcode: "NXDOMAIN" } as dnsPacket.Packet);
    expect(rcodeOf(naive)).toBe("NOERROR");
    for (const rcode of ["NXDOMAIN", "SERVFAIL", "FORMERR", "REFUSED", "NOTIMP"] as const) {
      const msg = response({ id: 7, question: question("denied.test") }, rcode);
      expect(rcodeOf(msg)).toBe(rcode);
      const decoded = dnsPacket.decode(msg) as dnsPacket.DecodedPacket & { rcode: string };
      expect(decoded.rcode).toBe(rcode);
      expect(decoded.type).toBe("response");
      expect(decoded.id).toBe(7);
      expect(decoded.questions).toEqual([question("denied.test")]);
      expect(decoded.answers).toEqual([]);
    }
  });

  it("are truncated (TC, no records) when bigger than the client accepts over UDP", () => {
    const answers = Array.from({ length: 40 }, (_, i) => a("big.test", `198.18.0.${i + 1}`));
    const classic = dnsPacket.decode(response({ id: 1, question: question("big.test") }, "NOERROR", { answers }));
    expect(classic.flag_tc).toBe(true);
    expect(classic.answers).toEqual([]);
    const checked = checkQuery(
      query({
        questions: [question("big.test")],
        additionals: [
          {
            type: "OPT",
            name: ".",
            udpPayloadSize: 4096,
            extendedRcode: 0,
            ednsVersion: 0,
            flags: 0,
            flag_do: false,
            options: [],
          },
        ],
      }),
    );
    if (isRejected(checked)) throw new Error(checked.reason);
    expect(checked.udpLimit).toBe(1232);
    const edns = dnsPacket.decode(response(checked, "NOERROR", { answers }));
    expect(edns.flag_tc).toBe(false);
    expect(edns.answers).toHaveLength(40);
  });
});

describe("checking a sandbox's query", () => {
  it("accepts one question of class IN and keeps only it (and EDNS) for the upstream", () => {
    const checked = checkQuery(query({}));
    expect(isRejected(checked)).toBe(false);
    if (isRejected(checked)) return;
    expect(checked.question).toEqual(question("allowed.test"));
    const forwarded = dnsPacket.decode(upstreamQuery(checked, 99));
    expect(forwarded.id).toBe(99);
    expect(forwarded.questions).toEqual([question("allowed.test")]);
    expect(forwarded.answers).toEqual([]);
    expect(forwarded.additionals).toEqual([]);
  });

  it("refuses two questions with FORMERR, as BIND and Unbound do, whatever the second asks", () => {
    const twice = query({ questions: [question("allowed.test"), question("denied.test")] });
    expect(checkQuery(twice)).toMatchObject({ id: 4242, rcode: "FORMERR" });
    expect(checkQuery(query({ questions: [] }))).toMatchObject({ id: 4242, rcode: "FORMERR" });
  });

  it("refuses records smuggled into a query, trailing bytes, and headers that lie about their counts", () => {
    expect(checkQuery(query({ answers: [a("allowed.test", "198.18.0.1")] }))).toMatchObject({ rcode: "FORMERR" });
    expect(checkQuery(query({ authorities: [a("x.test", "198.18.0.1")] }))).toMatchObject({ rcode: "FORMERR" });
    expect(checkQuery(query({ additionals: [a("denied.test", "198.18.0.1")] }))).toMatchObject({
      rcode: "FORMERR",
    });
    const trailing = Buffer.concat([query({}), query({ questions: [question("denied.test")] })]);
    expect(checkQuery(trailing)).toMatchObject({ rcode: "FORMERR" });
    // A header claiming one question, followed by two.
    const lying = query({ questions: [question("allowed.test"), question("denied.test")] });
    lying.writeUInt16BE(1, 4);
    expect(checkQuery(lying)).toMatchObject({ rcode: "FORMERR" });
    expect(checkQuery(Buffer.from([1, 2, 3]))).toMatchObject({ id: undefined, rcode: "FORMERR" });
  });

  it("refuses responses, other opcodes, zone transfers and classes other than IN", () => {
    expect(checkQuery(dnsPacket.encode({ id: 1, type: "response", questions: [question("x.test")] }))).toMatchObject({
      id: undefined,
    });
    const update = query({});
    update.writeUInt16BE(update.readUInt16BE(2) | (5 << 11), 2);
    expect(checkQuery(update)).toMatchObject({ rcode: "NOTIMP" });
    expect(checkQuery(query({ questions: [question("allowed.test", "AXFR")] }))).toMatchObject({ rcode: "REFUSED" });
    expect(checkQuery(query({ questions: [question("allowed.test", "IXFR")] }))).toMatchObject({ rcode: "REFUSED" });
    expect(checkQuery(query({ questions: [{ type: "TXT", name: "version.bind", class: "CH" }] }))).toMatchObject({
      rcode: "REFUSED",
    });
  });
});

describe("reading the upstream's answer", () => {
  it("counts only an answer with the proxy's id and question", () => {
    const answer = (id: number, name: string) =>
      dnsPacket.encode({ id, type: "response", questions: [question(name)], answers: [a(name, "198.18.0.3")] });
    expect(readUpstreamAnswer(answer(5, "allowed.test"), 5, question("allowed.test"))?.rcode).toBe("NOERROR");
    expect(readUpstreamAnswer(answer(6, "allowed.test"), 5, question("allowed.test"))).toBeUndefined();
    expect(readUpstreamAnswer(answer(5, "other.test"), 5, question("allowed.test"))).toBeUndefined();
  });

  it("keeps the records of the asked name and its CNAME chain, nothing else", () => {
    const records = [
      cname("allowed.test", "edge.cdn.test"),
      cname("edge.cdn.test", "node7.cdn.test"),
      a("node7.cdn.test", "198.18.0.7"),
      a("unrelated.test", "198.18.0.66"),
      cname("unrelated.test", "allowed.test"),
    ];
    expect(answersFor(question("Allowed.Test."), records)).toEqual(records.slice(0, 3));
  });
});
