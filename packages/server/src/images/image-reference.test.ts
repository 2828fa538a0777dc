import { describe, expect, it } from "vitest";
import { formatImageReference, isInsecureRegistry, parseImageReference } from "./image-reference.js";
import { parseChallenge } from "./registry-client.js";

describe("image references", () => {
  it("applies Docker Hub's defaults", () => {
    expect(parseImageReference("debian")).toEqual({
      registry: "docker.io",
      repository: "library/debian",
      tag: "latest",
      digest: null,
    });
    expect(formatImageReference(parseImageReference("team/app:1.2"))).toBe("docker.io/team/app:1.2");
    expect(formatImageReference(parseImageReference("index.docker.io/library/node:22"))).toBe(
      "docker.io/library/node:22",
    );
  });

  it("reads a registry with a port, a tag and a digest", () => {
    const digest = `sha256:${"a".repeat(64)}`;
    expect(parseImageReference(`127.0.0.1:5000/team/app:v1@${digest}`)).toEqual({
      registry: "127.0.0.1:5000",
      repository: "team/app",
      tag: "v1",
      digest,
    });
    expect(parseImageReference("localhost/app")).toMatchObject({ registry: "localhost", repository: "app" });
    expect(parseImageReference("registry.example:8443/app")).toMatchObject({ tag: "latest" });
    expect(parseImageReference(`ghcr.io/o/app@${digest}`)).toMatchObject({ tag: null, digest });
  });

  it("refuses malformed references, naming the part", () => {
    expect(() => parseImageReference("Team/App")).toThrow(/repository/);
    expect(() => parseImageReference("app@sha256:123")).toThrow(/digest/);
    expect(() => parseImageReference("app:bad/tag:x")).toThrow();
    expect(() => parseImageReference("app:-x")).toThrow(/tag/);
  });

  it("uses plain HTTP only for loopback and listed registries", () => {
    expect(isInsecureRegistry("127.0.0.1:5000", [])).toBe(true);
    expect(isInsecureRegistry("localhost:5000", [])).toBe(true);
    expect(isInsecureRegistry("registry.lan:5000", [])).toBe(false);
    expect(isInsecureRegistry("registry.lan:5000", ["registry.lan:5000"])).toBe(true);
    expect(isInsecureRegistry("registry.lan", ["registry.lan"])).toBe(true);
  });

  it("parses WWW-Authenticate challenges", () => {
    expect(
      parseChallenge(
        'Bearer realm="https://auth.docker.io/token",service="registry.docker.io",scope="repository:library/debian:pull"',
      ),
    ).toEqual({
      scheme: "bearer",
      params: {
        realm: "https://auth.docker.io/token",
        service: "registry.docker.io",
        scope: "repository:library/debian:pull",
      },
    });
    expect(parseChallenge('Basic realm="basic-realm"')).toEqual({ scheme: "basic", params: { realm: "basic-realm" } });
  });
});
