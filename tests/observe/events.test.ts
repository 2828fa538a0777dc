// Lifecycle events, their SSE stream and webhooks, against a real server with real gVisor sandboxes and
// real HTTP receivers on loopback (SANDPIT_OUTBOUND_ALLOWED_HOSTS lets the server reach them).
import { spawn } from "node:child_process";
import { createHmac, timingSafeEqual } from "node:crypto";
import path from "node:path";
import { Events, Webhooks } from "sandpit";
import { afterAll, describe, expect, it } from "vitest";
import { apiClient, type ErrorBody, type SandboxBody, waitFor } from "../helpers/api.js";
import { repoRoot, serverEntry } from "../helpers/paths.js";
import type { TestServer } from "../helpers/server.js";
import { useTestServer } from "../helpers/use-test-server.js";
import { type ReceivedWebhook, startWebhookReceiver, type WebhookReceiver } from "../helpers/webhook-receiver.js";

let server: TestServer;
let api: ReturnType<typeof apiClient>;

useTestServer(
  (s, a) => {
    server = s;
    api = a;
  },
  {
    SANDPIT_OUTBOUND_ALLOWED_HOSTS: "127.0.0.1",
    SANDPIT_WEBHOOK_RETRY_BASE_MS: "300",
    SANDPIT_WEBHOOK_TIMEOUT_MS: "3000",
  },
);

interface Event {
  id: number;
  type: string;
  sandboxId: string;
  at: string;
  data: Record<string, unknown>;
}

interface Attempt {
  deliveryId: string;
  eventId: number;
  eventType: string;
  attempt: number;
  statusCode: number | null;
  error: string | null;
  state: string;
}

const eventsOf = async (sandboxId: string, client = api) => {
  const res = await client.get<{ events: Event[] }>(`/v1/events?sandboxId=${sandboxId}&order=asc`);
  expect(res.status).toBe(200);
  return res.body.events;
};

const untilStatus = (id: string, status: string, ms = 30_000) =>
  waitFor(
    async () => {
      const s = (await api.get<SandboxBody>(`/v1/sandboxes/${id}`)).body;
      return s.status === status ? s : undefined;
    },
    ms,
    `status ${status}`,
  );

/** An SSE connection to the event stream that collects messages as they arrive. */
async function openStream(query: string, headers: Record<string, string> = {}) {
  const abort = new AbortController();
  const res = await fetch(`${server.url}/v1/events/stream${query}`, {
    headers: { authorization: `Bearer ${server.apiKey}`, ...headers },
    signal: abort.signal,
  });
  expect(res.status).toBe(200);
  expect(res.headers.get("content-type")).toContain("text/event-stream");
  const messages: { id?: string; event?: string; data?: string }[] = [];
  let raw = "";
  const reading = (async () => {
    const decoder = new TextDecoder();
    for await (const chunk of res.body as unknown as AsyncIterable<Uint8Array>) {
      raw += decoder.decode(chunk, { stream: true });
      let end = raw.indexOf("\n\n");
      while (end >= 0) {
        const block = raw.slice(0, end);
        raw = raw.slice(end + 2);
        const message: { id?: string; event?: string; data?: string } = {};
        for (const l of block.split("\n")) {
          const [field, ...rest] = l.split(": ");
          if (field === "id" || field === "event" || field === "data") message[field] = rest.join(": ");
        }
        if (message.data !== undefined) messages.push(message);
        end = raw.indexOf("\n\n");
      }
    }
  })().catch(() => undefined);
  return {
    messages,
    /** The first message whose event matches, waiting for it. */
    next: (match: (e: Event) => boolean, ms = 20_000) =>
      waitFor(async () => messages.find((m) => match(JSON.parse(m.data!) as Event)), ms, "an SSE event"),
    close: async () => {
      abort.abort();
      await reading;
    },
  };
}

/** Receivers of this file, closed after it. */
const openReceivers: WebhookReceiver[] = [];
async function startReceiver(initial: number[]) {
  const receiver = await startWebhookReceiver(initial);
  openReceivers.push(receiver);
  return receiver;
}
afterAll(async () => {
  for (const r of openReceivers) await r.close();
});

const otherOrgApi = async (name: string) => {
  const { createApiKey } = (await import(serverEntry)) as typeof import("../../packages/server/src/index.js");
  const other = await createApiKey({ dataDir: server.dataDir, org: name });
  return apiClient(server, other.key);
};

describe("lifecycle events", () => {
  it("records create, pause, resume and destroy in order, for the sandbox's organisation only", async () => {
    const s = await api.createSandbox({ metadata: { suite: "events" } });
    expect((await api.post(`/v1/sandboxes/${s.id}/pause`)).status).toBe(200);
    expect((await api.post(`/v1/sandboxes/${s.id}/resume`)).status).toBe(200);
    expect((await api.del(`/v1/sandboxes/${s.id}`)).status).toBe(204);

    const events = await eventsOf(s.id);
    expect(events.map((e) => e.type)).toEqual([
      "sandbox.created",
      "sandbox.paused",
      "sandbox.resumed",
      "sandbox.destroyed",
    ]);
    expect(events.every((e) => e.sandboxId === s.id)).toBe(true);
    const ids = events.map((e) => e.id);
    expect([...ids].sort((a, b) => a - b)).toEqual(ids);
    expect(events[0]!.data).toMatchObject({ template: "base", metadata: { suite: "events" } });
    expect(events[1]!.data.reason).toBe("requested");
    expect(events[3]!.data.reason).toBe("requested");
    expect(Date.parse(events[3]!.at)).toBeGreaterThanOrEqual(Date.parse(events[0]!.at));

    // Newest first by default, paged with a cursor.
    const first = await api.get<{ events: Event[]; nextCursor?: string }>(`/v1/events?sandboxId=${s.id}&limit=3`);
    expect(first.body.events.map((e) => e.type)).toEqual(["sandbox.destroyed", "sandbox.resumed", "sandbox.paused"]);
    expect(first.body.nextCursor).toBeDefined();
    const second = await api.get<{ events: Event[]; nextCursor?: string }>(
      `/v1/events?sandboxId=${s.id}&limit=3&cursor=${first.body.nextCursor}`,
    );
    expect(second.body.events.map((e) => e.type)).toEqual(["sandbox.created"]);
    expect(second.body.nextCursor).toBeUndefined();
    const byType = await api.get<{ events: Event[] }>(
      `/v1/events?sandboxId=${s.id}&type=sandbox.paused,sandbox.resumed`,
    );
    expect(byType.body.events.map((e) => e.type)).toEqual(["sandbox.resumed", "sandbox.paused"]);

    const bad = await api.get<ErrorBody>("/v1/events?type=sandbox.exploded");
    expect(bad.status).toBe(400);
    expect(bad.body.error.details!.fields![0]!.field).toContain("type");

    // Another organisation sees none of it: not in its list, not by sandbox id, not on its stream.
    const other = await otherOrgApi("events-intruder");
    expect(await eventsOf(s.id, other)).toEqual([]);
    const all = await other.get<{ events: Event[] }>("/v1/events?order=asc&since=2000-01-01T00:00:00Z");
    expect(all.body.events).toEqual([]);
  });

  it("records a sandbox killed by OOM as sandbox.error with its reason, and a timeout as sandbox.expired", async () => {
    const [hog, shortLived] = await Promise.all([
      api.createSandbox({ resources: { memoryMb: 256 } }),
      api.createSandbox({ timeoutMs: 2000 }),
    ]);
    // Memory the kernel cannot take back (tmpfs lives in the sandbox's memory) kills the whole sandbox.
    const filled = await api.post<ErrorBody>(`/v1/sandboxes/${hog.id}/exec`, {
      command: "head -c 400000000 /dev/zero > /tmp/fill",
      timeoutMs: 60_000,
    });
    expect(filled.status).toBe(409);
    const hogEvents = await eventsOf(hog.id);
    expect(hogEvents.map((e) => e.type)).toEqual(["sandbox.created", "sandbox.error"]);
    expect(hogEvents[1]!.data).toMatchObject({ reason: "oom" });

    await untilStatus(shortLived.id, "destroyed");
    const expired = await eventsOf(shortLived.id);
    expect(expired.map((e) => e.type)).toEqual(["sandbox.created", "sandbox.expired", "sandbox.destroyed"]);
    expect(expired[1]!.data).toMatchObject({ action: "destroy", timeoutMs: 2000 });
    expect(expired[2]!.data).toMatchObject({ reason: "expired" });

    // Destroying a failed sandbox is a requested destroy, whatever killed it.
    await api.del(`/v1/sandboxes/${hog.id}`);
    const after = await eventsOf(hog.id);
    expect(after.at(-1)).toMatchObject({ type: "sandbox.destroyed", data: { reason: "requested" } });
  });
});

describe("the event stream", () => {
  it("delivers a live event and resumes from Last-Event-ID", async () => {
    const live = await openStream("");
    const s = await api.createSandbox();
    const created = await live.next((e) => e.sandboxId === s.id && e.type === "sandbox.created");
    await live.close();
    const createdEvent = JSON.parse(created.data!) as Event;
    expect(created.event).toBe("sandbox.created");
    expect(created.id).toBe(String(createdEvent.id));

    // Missed while disconnected: the pause and the destroy.
    await api.post(`/v1/sandboxes/${s.id}/pause`);
    await api.del(`/v1/sandboxes/${s.id}`);
    const resumed = await openStream(`?sandboxId=${s.id}`, { "last-event-id": created.id! });
    await resumed.next((e) => e.type === "sandbox.destroyed");
    expect(resumed.messages.map((m) => m.event)).toEqual(["sandbox.paused", "sandbox.destroyed"]);
    expect(resumed.messages.map((m) => Number(m.id))).toEqual(
      (await eventsOf(s.id)).filter((e) => e.id > createdEvent.id).map((e) => e.id),
    );
    await resumed.close();

    // Another organisation's stream, even from the beginning, carries none of these events.
    const other = await otherOrgApi("stream-intruder");
    const res = await other.get(`/v1/events?sandboxId=${s.id}`);
    expect(res.body).toEqual({ events: [] });
  });

  it("is what the SDK lists and streams", async () => {
    const connection = { apiUrl: server.url, apiKey: server.apiKey };
    const stop = new AbortController();
    const seen: string[] = [];
    const s = await api.createSandbox();
    const following = (async () => {
      for await (const e of Events.stream({ sandboxId: s.id, after: 0, signal: stop.signal }, connection)) {
        seen.push(e.type);
        if (e.type === "sandbox.destroyed") stop.abort();
      }
    })();
    await api.del(`/v1/sandboxes/${s.id}`);
    await following;
    expect(seen).toEqual(["sandbox.created", "sandbox.destroyed"]);
    const { events } = await Events.list({ sandboxId: s.id, order: "asc" }, connection);
    expect(events.map((e) => e.type)).toEqual(seen);
  });

  it("is what `sandpit events` prints, and follows", async () => {
    const cli = path.join(repoRoot, "packages/cli/dist/main.js");
    const s = await api.createSandbox();
    const child = spawn(process.execPath, [cli, "events", "--follow", "--sandbox", s.id], {
      env: { ...process.env, SANDPIT_URL: server.url, SANDPIT_API_KEY: server.apiKey },
      stdio: ["ignore", "pipe", "pipe"],
    });
    let out = "";
    child.stdout.on("data", (c: Buffer) => {
      out += c.toString();
    });
    try {
      await waitFor(async () => (out.includes("sandbox.created") ? true : undefined), 15_000, "the listed event");
      await api.del(`/v1/sandboxes/${s.id}`);
      await waitFor(async () => (out.includes("sandbox.destroyed") ? true : undefined), 15_000, "the followed event");
    } finally {
      child.kill("SIGTERM");
    }
    const lines = out.trim().split("\n");
    expect(lines).toHaveLength(2);
    expect(lines[0]).toMatch(new RegExp(`^\\S+Z  sandbox\\.created\\s+${s.id}  template=base$`));
    expect(lines[1]).toMatch(new RegExp(`sandbox\\.destroyed\\s+${s.id}  reason=requested$`));
  });
});

/** Checks X-Sandpit-Signature the way a receiver would: HMAC-SHA256 of "t.body" with the secret. */
function verify(received: ReceivedWebhook, secret: string) {
  const header = String(received.headers["x-sandpit-signature"]);
  const match = /^t=(\d+),v1=([0-9a-f]{64})$/.exec(header);
  expect(match, header).not.toBeNull();
  const [, t, v1] = match!;
  expect(Math.abs(Date.now() / 1000 - Number(t))).toBeLessThan(60);
  const expected = createHmac("sha256", secret).update(`${t}.${received.body}`).digest();
  return timingSafeEqual(expected, Buffer.from(v1!, "hex"));
}

describe("webhooks", () => {
  it("sends a signed sandbox.destroyed to a receiver, and logs the delivery", async () => {
    const receiver = await startReceiver([200]);
    const created = await api.post<{ id: string; secret: string; events: string[] }>("/v1/webhooks", {
      url: receiver.url,
      events: ["sandbox.destroyed"],
    });
    expect(created.status).toBe(201);
    expect(created.body.secret).toMatch(/^whsec_/);
    const hook = created.body;
    const listed = await api.get<{ webhooks: Record<string, unknown>[] }>("/v1/webhooks");
    const mine = listed.body.webhooks.find((w) => w.id === hook.id);
    expect(mine).toMatchObject({ url: receiver.url, events: ["sandbox.destroyed"] });
    expect(mine).not.toHaveProperty("secret");

    const s = await api.createSandbox();
    await api.del(`/v1/sandboxes/${s.id}`);
    const got = await waitFor(async () => receiver.received[0], 15_000, "the webhook delivery");
    expect(receiver.received).toHaveLength(1); // only the type it asked for
    expect(got.headers["content-type"]).toBe("application/json");
    expect(got.headers["x-sandpit-event"]).toBe("sandbox.destroyed");
    expect(got.headers["x-sandpit-delivery"]).toMatch(/^whd_/);
    expect(verify(got, hook.secret)).toBe(true);
    expect(verify(got, "a-different-secret-entirely")).toBe(false);
    expect(Webhooks.verifySignature(got.body, String(got.headers["x-sandpit-signature"]), hook.secret)).toBe(true);
    const body = JSON.parse(got.body) as Event;
    const destroyed = (await eventsOf(s.id)).find((e) => e.type === "sandbox.destroyed")!;
    expect(body).toEqual(destroyed);

    const log = await waitFor(async () => {
      const res = await api.get<{ deliveries: Attempt[] }>(`/v1/webhooks/${hook.id}/deliveries`);
      return res.body.deliveries.length ? res.body.deliveries : undefined;
    });
    expect(log).toEqual([
      expect.objectContaining({
        deliveryId: got.headers["x-sandpit-delivery"],
        eventId: destroyed.id,
        eventType: "sandbox.destroyed",
        attempt: 1,
        statusCode: 200,
        error: null,
        state: "delivered",
      }),
    ]);

    // Tenants never see each other's webhooks.
    const other = await otherOrgApi("webhook-intruder");
    expect((await other.get<{ webhooks: unknown[] }>("/v1/webhooks")).body.webhooks).toEqual([]);
    expect((await other.get(`/v1/webhooks/${hook.id}/deliveries`)).status).toBe(404);
    expect((await other.del(`/v1/webhooks/${hook.id}`)).status).toBe(404);
    expect((await api.del(`/v1/webhooks/${hook.id}`)).status).toBe(204);
    expect((await api.get(`/v1/webhooks/${hook.id}/deliveries`)).status).toBe(404);
  });

  it("refuses URLs the server may not reach and invalid fields, naming the field", async () => {
    const cases: [Record<string, unknown>, string][] = [
      [{ url: "ftp://example.com/x" }, "url"],
      [{ url: "http://10.1.2.3/hook" }, "url"],
      [{ url: "http://127.0.0.1:1/hook", secret: "short" }, "secret"],
      [{ url: "http://127.0.0.1:1/hook", events: ["sandbox.exploded"] }, "events.0"],
    ];
    for (const [body, field] of cases) {
      const res = await api.post<ErrorBody>("/v1/webhooks", body);
      expect(res.status, JSON.stringify(body)).toBe(400);
      expect(res.body.error.details!.fields!.map((f) => f.field)).toContain(field);
    }
    const privateUrl = await api.post<ErrorBody>("/v1/webhooks", { url: "http://10.1.2.3/hook" });
    expect(privateUrl.body.error.message).toContain("non-public");
  });

  it("retries a receiver that fails: 500, 500, then 200 on the third attempt", async () => {
    const receiver = await startReceiver([500, 500, 200]);
    const hook = (
      await api.post<{ id: string; secret: string }>("/v1/webhooks", {
        url: receiver.url,
        events: ["sandbox.destroyed"],
        secret: "a-secret-of-our-own-choosing",
      })
    ).body;
    const s = await api.createSandbox();
    await api.del(`/v1/sandboxes/${s.id}`);
    await waitFor(async () => (receiver.received.length >= 3 ? true : undefined), 20_000, "three attempts");
    await new Promise((r) => setTimeout(r, 1500)); // no fourth attempt follows a success
    expect(receiver.received.map((r) => r.answered)).toEqual([500, 500, 200]);
    // Every attempt is the same delivery of the same event, signed anew.
    expect(new Set(receiver.received.map((r) => r.headers["x-sandpit-delivery"])).size).toBe(1);
    expect(new Set(receiver.received.map((r) => r.body)).size).toBe(1);
    for (const r of receiver.received) expect(verify(r, "a-secret-of-our-own-choosing")).toBe(true);

    const log = await waitFor(async () => {
      const res = await api.get<{ deliveries: Attempt[] }>(`/v1/webhooks/${hook.id}/deliveries`);
      return res.body.deliveries.length === 3 ? res.body.deliveries : undefined;
    });
    expect(log.map((a) => [a.attempt, a.statusCode, a.error, a.state])).toEqual([
      [3, 200, null, "delivered"],
      [2, 500, "HTTP 500", "retrying"],
      [1, 500, "HTTP 500", "retrying"],
    ]);
    await api.del(`/v1/webhooks/${hook.id}`);
  });

  it("keeps pending deliveries across a server crash and delivers them after the restart", async () => {
    const receiver = await startReceiver([503]);
    const hook = (
      await api.post<{ id: string; secret: string }>("/v1/webhooks", {
        url: receiver.url,
        events: ["sandbox.destroyed"],
      })
    ).body;
    const s = await api.createSandbox();
    await api.del(`/v1/sandboxes/${s.id}`);
    await waitFor(async () => (receiver.received.length >= 1 ? true : undefined), 15_000, "a first attempt");
    await server.kill9();
    // The receiver recovers while the server is down: what it gets from now on is after the restart.
    const failedBefore = receiver.received.length;
    receiver.statuses = [...Array<number>(failedBefore).fill(503), 200];
    await server.restart();

    const got = await waitFor(async () => receiver.received[failedBefore], 30_000, "the delivery after the restart");
    expect(got.answered).toBe(200);
    expect(got.headers["x-sandpit-event"]).toBe("sandbox.destroyed");
    expect(verify(got, hook.secret)).toBe(true);
    const log = await waitFor(async () => {
      const res = await api.get<{ deliveries: Attempt[] }>(`/v1/webhooks/${hook.id}/deliveries`);
      return res.body.deliveries[0]?.state === "delivered" ? res.body.deliveries : undefined;
    });
    expect(log[0]).toMatchObject({ statusCode: 200, state: "delivered", attempt: log.length });
    expect(log.length).toBeGreaterThanOrEqual(2);
    expect(log.slice(1).every((a) => a.statusCode === 503 && a.state === "retrying")).toBe(true);
  });
});
