import { apiClient } from "./api.js";
import type { TestServer } from "./server.js";

/** The value of one series in Prometheus's text format (exactly these labels), 0 when it is absent. */
export function sampleOf(text: string, name: string, labels: Record<string, string> = {}): number {
  const wanted = Object.entries(labels).map(([k, v]) => `${k}="${v}"`);
  for (const line of text.split("\n")) {
    const match = /^([a-zA-Z_:][a-zA-Z0-9_:]*)(?:\{(.*)\})? (\S+)$/.exec(line);
    if (!match || match[1] !== name) continue;
    const have = (match[2] ?? "").split(",").filter(Boolean);
    if (have.length === wanted.length && wanted.every((w) => have.includes(w))) return Number(match[3]);
  }
  return 0;
}

/** Scrapes a server's /metrics with the admin key and reads one series. */
export async function scrapeSample(
  server: Pick<TestServer, "url">,
  adminKey: string,
  name: string,
  labels: Record<string, string> = {},
): Promise<number> {
  const res = await apiClient({ url: server.url, apiKey: adminKey }).get<Buffer>("/metrics");
  if (res.status !== 200) throw new Error(`/metrics answered ${res.status}`);
  return sampleOf(res.body.toString(), name, labels);
}
