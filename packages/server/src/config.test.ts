import os from "node:os";
import { afterEach, describe, expect, it } from "vitest";
import { loadConfig } from "./config.js";

const saved = { ...process.env };
afterEach(() => {
  process.env = { ...saved };
});

function configWith(env: Record<string, string>) {
  process.env = { ...saved, ...env };
  return loadConfig({ dataDir: "/var/tmp/sandpit-config-test" });
}

describe("server settings for density", () => {
  it("keeps 8 idle sandboxes live per CPU under systrap and 48 under ptrace, unless told", () => {
    const cpus = os.availableParallelism();
    expect(configWith({}).liveIdleMax).toBe(8 * cpus);
    expect(configWith({ SANDPIT_PLATFORM: "ptrace" }).liveIdleMax).toBe(48 * cpus);
    expect(configWith({ SANDPIT_LIVE_IDLE_MAX: "0" }).liveIdleMax).toBe(0);
    expect(() => configWith({ SANDPIT_LIVE_IDLE_MAX: "many" })).toThrow(/SANDPIT_LIVE_IDLE_MAX must be a whole number/);
  });

  it("writes pause images uncompressed unless told, and refuses an unknown compression by name", () => {
    expect(configWith({}).checkpointCompression).toBe("none");
    expect(configWith({ SANDPIT_CHECKPOINT_COMPRESSION: "flate-best-speed" }).checkpointCompression).toBe(
      "flate-best-speed",
    );
    expect(() => configWith({ SANDPIT_CHECKPOINT_COMPRESSION: "zstd" })).toThrow(
      /SANDPIT_CHECKPOINT_COMPRESSION must be one of none, flate-best-speed/,
    );
  });
});
