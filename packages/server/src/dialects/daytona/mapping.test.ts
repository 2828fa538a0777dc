import { describe, expect, it } from "vitest";
import { baseImageOf, daytonaField, splitCommand, stateOf } from "./mapping.js";

describe("Daytona mapping", () => {
  it("splits a command as Daytona's daemon does: spaces outside quotes, quotes removed, no shell", () => {
    expect(splitCommand(`sh -c 'echo "a b"; ls'`)).toEqual(["sh", "-c", 'echo "a b"; ls']);
    expect(splitCommand("  ls   -la ")).toEqual(["ls", "-la"]);
    expect(splitCommand("echo hi && ls")).toEqual(["echo", "hi", "&&", "ls"]);
  });

  it("reads the image of a FROM-only Dockerfile and nothing else", () => {
    expect(baseImageOf("FROM python:3.12\n")).toBe("python:3.12");
    expect(baseImageOf("FROM python:3.12\nRUN pip install x\n")).toBeUndefined();
  });

  it("names Daytona's fields and states", () => {
    expect(daytonaField("resources.memoryMb")).toBe("memory");
    expect(daytonaField("metadata.k")).toBe("labels.k");
    expect(stateOf("paused")).toBe("stopped");
    expect(stateOf("running")).toBe("started");
  });
});
