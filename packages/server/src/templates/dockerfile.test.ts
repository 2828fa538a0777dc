import { describe, expect, it } from "vitest";
import { DockerfileError, expandVars, parseDockerfile } from "./dockerfile.js";

describe("parseDockerfile", () => {
  it("reads the supported instructions with their line numbers", () => {
    const steps = parseDockerfile(
      [
        "# a comment",
        "FROM base",
        'ENV A=1 B="two words"',
        "ENV LEGACY some value",
        "RUN apt-get update && \\",
        "    apt-get install -y jq",
        'RUN ["python3", "-c", "print(1)"]',
        "COPY --chown=app:app src/ ./app/",
        "WORKDIR /app",
        "USER app",
        "LABEL x=y",
        'ENTRYPOINT ["node"]',
        "CMD server.js",
      ].join("\n"),
    );
    expect(steps).toEqual([
      { op: "FROM", ref: "base", line: 2 },
      { op: "ENV", vars: { A: "1", B: "two words" }, line: 3 },
      { op: "ENV", vars: { LEGACY: "some value" }, line: 4 },
      { op: "RUN", shell: "apt-get update && apt-get install -y jq", args: null, line: 5 },
      { op: "RUN", shell: null, args: ["python3", "-c", "print(1)"], line: 7 },
      { op: "COPY", sources: ["src/"], dest: "./app/", chown: "app:app", line: 8 },
      { op: "WORKDIR", path: "/app", line: 9 },
      { op: "USER", user: "app", line: 10 },
      { op: "ENTRYPOINT", args: ["node"], line: 12 },
      { op: "CMD", args: ["/bin/sh", "-c", "server.js"], line: 13 },
    ]);
  });

  it("names the line of what it cannot build", () => {
    expect(() => parseDockerfile("RUN true")).toThrow(/line 1: the first instruction must be FROM/);
    expect(() => parseDockerfile("FROM base\nHEALTHCHEK x\n")).toThrow(/line 2: HEALTHCHEK is not supported/);
    expect(() => parseDockerfile("FROM a\nFROM b")).toThrow(/line 2: multi-stage/);
    expect(() => parseDockerfile('FROM base\nRUN ["unterminated"')).toThrow(DockerfileError);
    expect(() => parseDockerfile("FROM base\nADD https://x/y.tgz /")).toThrow(/URL is not supported/);
    expect(() => parseDockerfile("# only a comment")).toThrow(/needs a FROM/);
  });

  it("expands $VAR and braced variables from the environment so far", () => {
    const braced = ["$", "{NAME}"].join("");
    expect(expandVars(`$HOME/x/${braced}-$MISSING`, { HOME: "/root", NAME: "n" })).toBe("/root/x/n-");
  });
});
