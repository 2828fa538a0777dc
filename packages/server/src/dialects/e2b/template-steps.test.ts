import { describe, expect, it } from "vitest";
import { ApiError } from "../../errors.js";
import { parseDockerfile } from "../../templates/dockerfile.js";
import { templateBuildStartSchema, translateTemplate } from "./template-steps.js";

const translate = (body: unknown) => translateTemplate(templateBuildStartSchema.parse(body));

describe("E2B template steps as a Sandpit Dockerfile", () => {
  it("writes steps that Sandpit's Dockerfile parser reads back unchanged, whatever the command holds", () => {
    const command = "printf \"a\\nb\" > f && echo '$HOME' # not a comment\nsecond line";
    const t = translate({
      fromTemplate: "base",
      steps: [
        { type: "RUN", args: [command] },
        { type: "RUN", args: ["apt-get install -y jq", "root"] },
        { type: "ENV", args: ["A", 'quote " and \\ back', "B", "2"] },
        { type: "COPY", args: ["src/app.py", "/app/", "", "0755"], filesHash: "abc123" },
        { type: "WORKDIR", args: ["/app"] },
        { type: "USER", args: ["guest"] },
      ],
      startCmd: "python app.py",
    });
    const steps = parseDockerfile(t.dockerfile);
    expect(steps[0]).toMatchObject({ op: "FROM", ref: "base" });
    const runs = steps.filter((s) => s.op === "RUN").map((s) => (s.op === "RUN" ? s.args : null));
    expect(runs[0]).toEqual(["/bin/bash", "-c", command]);
    expect(runs[1]).toEqual(["/bin/bash", "-c", "apt-get install -y jq"]);
    expect(steps.find((s) => s.op === "ENV")).toMatchObject({ vars: { A: 'quote " and \\ back', B: "2" } });
    expect(steps.find((s) => s.op === "COPY")).toMatchObject({
      sources: ["abc123/src/app.py"],
      dest: "/app/",
      chown: "user",
    });
    expect(runs).toContainEqual(["chmod", "0755", "/app/app.py"]);
    expect(steps.find((s) => s.op === "ENTRYPOINT")).toMatchObject({ args: ["/bin/bash", "-c", "python app.py"] });
    // E2B's defaults, then the user each step asked for, and back.
    expect(steps.filter((s) => s.op === "USER").map((s) => (s.op === "USER" ? s.user : ""))).toEqual([
      "user",
      "root",
      "user",
      "root",
      "user",
      "root",
      "guest",
    ]);
    expect(t.filesHashes).toEqual(["abc123"]);
    // Every Dockerfile line maps back to the E2B step it came from (0 is the base).
    expect(t.stepOfLine.get(1)).toBe(0);
    expect([...t.stepOfLine.values()]).toContain(6);
  });

  it("maps E2B's base image and Docker Hub images a built-in stands for; pulls the others as they are", () => {
    expect(translate({}).dockerfile).toMatch(/^FROM base\n/);
    expect(translate({ fromImage: "e2bdev/base:latest" }).dockerfile).toMatch(/^FROM base\n/);
    expect(translate({ fromImage: "python:3.13" }).dockerfile).toMatch(/^FROM python3\.13\n/);
    expect(translate({ fromTemplate: "code-interpreter-v1" }).dockerfile).toMatch(/^FROM code-interpreter\n/);
    const image = translate({
      fromImage: "registry.local:5000/team/app:1",
      fromImageRegistry: { type: "registry", username: "u", password: "p" },
      steps: [{ type: "RUN", args: ["true"] }],
    });
    expect(image.dockerfile).toBe('FROM registry.local:5000/team/app:1\nRUN ["/bin/sh","-c","true"]\n');
    expect(image.fromAuth).toEqual({ username: "u", password: "p" });
  });

  it("refuses what Sandpit cannot build, naming the step or field", () => {
    const refusal = (body: unknown) => {
      try {
        translate(body);
      } catch (e) {
        return e instanceof ApiError ? e.message : String(e);
      }
      return "accepted";
    };
    expect(
      refusal({
        steps: [
          { type: "RUN", args: ["true"] },
          { type: "MOUNT", args: [] },
        ],
      }),
    ).toMatch(/steps\[1\] \(MOUNT\): this step is not supported/);
    expect(refusal({ fromImage: "x", fromImageRegistry: { type: "aws" } })).toMatch(
      /fromImageRegistry: aws registries/,
    );
    expect(refusal({ steps: [{ type: "COPY", args: ["a", "/b"] }] })).toMatch(
      /steps\[0\] \(COPY\): needs the filesHash/,
    );
    expect(refusal({ steps: [{ type: "COPY", args: ["../x", "/b"], filesHash: "h" }] })).toMatch(/stay in the context/);
    expect(refusal({ steps: [{ type: "ENV", args: ["A", "two\nlines"] }] })).toMatch(/steps\[0\] \(ENV\): A: values/);
    expect(refusal({ readyCmd: "true" })).toMatch(/readyCmd: needs a startCmd/);
  });
});
