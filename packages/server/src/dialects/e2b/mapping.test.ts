import { describe, expect, it } from "vitest";
import {
  createRequestFrom,
  networkPolicyFrom,
  parseMetadataQuery,
  parseStates,
  volumeEntryStatOf,
  volumeMountsOf,
  volumeOf,
} from "./mapping.js";

describe("E2B mapping", () => {
  it("turns E2B egress settings into Sandpit policies", () => {
    expect(networkPolicyFrom({})).toBeUndefined();
    expect(networkPolicyFrom({ allow_internet_access: false })).toEqual({ mode: "deny-all" });
    expect(networkPolicyFrom({ network: { allowOut: ["8.8.8.8", "*.example.com"], denyOut: ["0.0.0.0/0"] } })).toEqual({
      mode: "custom",
      allow: { cidrs: ["8.8.8.8/32"], domains: ["*.example.com"] },
      deny: { cidrs: [] },
    });
    expect(networkPolicyFrom({ network: { denyOut: ["10.0.0.0/8"] } })).toEqual({
      mode: "custom",
      allow: { cidrs: ["0.0.0.0/0"] },
      deny: { cidrs: ["10.0.0.0/8"] },
    });
  });

  it("maps a create request with seconds, autoPause and every port exposed", () => {
    expect(createRequestFrom({ templateID: "base", timeout: 300, autoPause: true, envVars: { A: "1" } })).toMatchObject(
      {
        template: "base",
        timeoutMs: 300_000,
        timeoutAction: "pause",
        env: { A: "1" },
        allPorts: true,
        publicPorts: true,
      },
    );
    expect(createRequestFrom({ templateID: "base", network: { allowPublicTraffic: false } }).publicPorts).toBe(false);
  });

  it("mounts volumes given as volumeMounts and shows a sandbox's named volumes", () => {
    expect(
      createRequestFrom({
        templateID: "base",
        volumeMounts: [
          { name: "data", path: "/mnt/data" },
          { name: "cache", path: "/cache" },
        ],
      }).volumes,
    ).toEqual([
      { name: "data", mountPath: "/mnt/data" },
      { name: "cache", mountPath: "/cache" },
    ]);
    expect(createRequestFrom({ templateID: "base", volumeMounts: [] }).volumes).toBeUndefined();
    expect(
      volumeMountsOf({
        volumes: [
          { volumeId: "vol_a", name: "data", mountPath: "/mnt/data", readOnly: false },
          { hostPath: "/srv/shared", mountPath: "/shared", readOnly: true },
        ],
      }),
    ).toEqual([{ name: "data", path: "/mnt/data" }]);
  });

  it("shows volumes and their entries in E2B's shapes", () => {
    expect(volumeOf({ id: "vol_a", name: "data" })).toEqual({ volumeID: "vol_a", name: "data" });
    expect(volumeOf({ id: "vol_a", name: "data" }, "vtok_x")).toEqual({
      volumeID: "vol_a",
      name: "data",
      token: "vtok_x",
    });
    const at = new Date(Date.UTC(2024, 0, 1));
    expect(
      volumeEntryStatOf({
        name: "l",
        path: "/d/l",
        type: "symlink",
        size: 3,
        mode: 0o777,
        uid: 0,
        gid: 0,
        atime: at,
        mtime: at,
        ctime: at,
        target: "/x",
      }),
    ).toEqual({
      name: "l",
      path: "/d/l",
      type: "symlink",
      size: 3,
      mode: 0o777,
      uid: 0,
      gid: 0,
      atime: "2024-01-01T00:00:00.000Z",
      mtime: "2024-01-01T00:00:00.000Z",
      ctime: "2024-01-01T00:00:00.000Z",
      target: "/x",
    });
  });

  it("reads the metadata and state queries", () => {
    expect(parseMetadataQuery("user%3Dabc=x&app=prod%20x")).toEqual({ "user=abc": "x", app: "prod x" });
    expect(parseStates(undefined)).toEqual(["running", "paused"]);
    expect(parseStates("paused")).toEqual(["paused"]);
    expect(parseStates(["running,paused"])).toEqual(["running", "paused"]);
  });
});
