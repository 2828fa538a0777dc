import { describe, expect, it } from "vitest";
import { age, formatBytes, formatDuration, joinPath, parentPath, parseKeyValueLines, parseSearch } from "./format";

describe("console formatting", () => {
  it("shows durations in their two largest units", () => {
    expect(formatDuration(42_000)).toBe("42s");
    expect(formatDuration(3 * 60_000 + 5_000)).toBe("3m 5s");
    expect(formatDuration(2 * 3_600_000 + 7 * 60_000)).toBe("2h 7m");
    expect(formatDuration(50 * 3_600_000)).toBe("2d 2h");
    expect(age("2025-01-01T00:00:00Z", Date.parse("2025-01-01T00:01:30Z"))).toBe("1m 30s");
  });

  it("shows sizes in binary units", () => {
    expect(formatBytes(512)).toBe("512 B");
    expect(formatBytes(1536)).toBe("1.5 KiB");
    expect(formatBytes(2 * 1024 ** 3)).toBe("2 GiB");
    expect(formatBytes(300 * 1024 ** 2)).toBe("300 MiB");
  });

  it("splits the search box into server-side metadata matches and free words", () => {
    expect(parseSearch("  team=infra Build  env=ci ")).toEqual({
      metadata: { team: "infra", env: "ci" },
      words: ["build"],
    });
  });

  it("parses key=value lines and names the bad line", () => {
    expect(parseKeyValueLines("a=1\n\n b = two \n")).toEqual({ a: "1", b: "two" });
    expect(() => parseKeyValueLines("a=1\nnope")).toThrow(/line 2/);
  });

  it("joins and climbs paths", () => {
    expect(joinPath("/workspace/", "a.txt")).toBe("/workspace/a.txt");
    expect(joinPath("/", "etc")).toBe("/etc");
    expect(parentPath("/workspace/dir")).toBe("/workspace");
    expect(parentPath("/workspace")).toBe("/");
    expect(parentPath("/")).toBe("/");
  });
});
