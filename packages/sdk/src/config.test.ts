import { describe, expect, it } from "vitest";
import { DEFAULT_API_URL, DEFAULT_MAX_RETRIES, DEFAULT_REQUEST_TIMEOUT_MS, resolveConfig } from "./config.js";

describe("resolveConfig", () => {
  it("uses the defaults when neither options nor environment say anything", () => {
    const config = resolveConfig({}, {});
    expect(config.apiUrl).toBe(DEFAULT_API_URL);
    expect(config.apiKey).toBeUndefined();
    expect(config.timeoutMs).toBe(DEFAULT_REQUEST_TIMEOUT_MS);
    expect(config.maxRetries).toBe(DEFAULT_MAX_RETRIES);
    expect(typeof config.fetch).toBe("function");
  });

  it("falls back to SANDPIT_URL and SANDPIT_API_KEY", () => {
    const config = resolveConfig({}, { SANDPIT_URL: "http://sandpit.internal:9000/", SANDPIT_API_KEY: "sk_env" });
    expect(config.apiUrl).toBe("http://sandpit.internal:9000");
    expect(config.apiKey).toBe("sk_env");
  });

  it("prefers options over the environment", () => {
    const config = resolveConfig(
      { apiUrl: "http://option:1", apiKey: "sk_option", timeoutMs: 5, maxRetries: 0 },
      { SANDPIT_URL: "http://env:2", SANDPIT_API_KEY: "sk_env" },
    );
    expect(config).toMatchObject({ apiUrl: "http://option:1", apiKey: "sk_option", timeoutMs: 5, maxRetries: 0 });
  });

  it("treats empty strings as unset", () => {
    const config = resolveConfig({ apiUrl: "", apiKey: "" }, { SANDPIT_URL: "", SANDPIT_API_KEY: "" });
    expect(config.apiUrl).toBe(DEFAULT_API_URL);
    expect(config.apiKey).toBeUndefined();
  });

  it("keeps an injected fetch", () => {
    const fetch = async () => new Response("{}");
    expect(resolveConfig({ fetch }, {}).fetch).toBe(fetch);
  });

  it("rejects negative limits", () => {
    expect(() => resolveConfig({ maxRetries: -1 }, {})).toThrow(RangeError);
    expect(() => resolveConfig({ timeoutMs: Number.NaN }, {})).toThrow(RangeError);
  });
});
