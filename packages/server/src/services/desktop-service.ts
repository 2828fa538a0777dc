import type http from "node:http";
import { buffer } from "node:stream/consumers";
import {
  type DesktopKeyboardRequest,
  type DesktopLaunchRequest,
  type DesktopMouseRequest,
  type DesktopPoint,
  type DesktopScreenshotQuery,
  type DesktopState,
  type DesktopWindow,
  desktopKeyboardRequestSchema,
  desktopLaunchedSchema,
  desktopLaunchRequestSchema,
  desktopMouseRequestSchema,
  desktopPointSchema,
  desktopScreenshotQuerySchema,
  desktopStateSchema,
  desktopWindowSchema,
} from "@sandpit/contract";
import { z } from "zod";
import type { OrgRecord } from "../domain/index.js";
import { ApiError, validationError } from "../errors.js";
import { DESKTOP_SERVER_DIR } from "../runtime/gvisor-runtime.js";
import type { ExecService } from "./exec-service.js";
import { HelperServer, ownOrg } from "./helper-server.js";
import type { SandboxService } from "./sandbox-service.js";
import { POOL_TAG } from "./warm-pool-service.js";

/** Port of the in-sandbox desktop server (beside the code server's 49981 and the agent's 49982). */
export const DESKTOP_SERVER_PORT = 49980;
/** The account of the built-in templates' sandboxes (uid 1000) that owns the display when none is asked for. */
const DESKTOP_USER = "user";
/** Xvfb and an Xfce session under gVisor on a loaded host take several seconds. */
const DESKTOP_SERVER_READY_TIMEOUT_MS = 90_000;

/** A screenshot: the PNG and where its time went inside the sandbox. */
export interface DesktopScreenshot {
  png: Buffer;
  captureMs: number;
  encodeMs: number;
}

/**
 * Desktops: a virtual display (Xvfb :0) with Xfce, driven by the in-sandbox desktop server
 * (packages/agent/desktop), which starts the display as the sandbox's user when the sandbox is created
 * (or on first use). The display and its windows are processes of the sandbox: they survive pause,
 * resume, snapshots and forks.
 */
export class DesktopService {
  private readonly server: HelperServer;

  constructor(
    private readonly sandboxes: SandboxService,
    exec: ExecService,
  ) {
    this.server = new HelperServer(
      {
        name: "desktop server",
        port: DESKTOP_SERVER_PORT,
        tokenLabel: "sandpit-desktop-server",
        script: `${DESKTOP_SERVER_DIR}/server.py`,
        readyTimeoutMs: DESKTOP_SERVER_READY_TIMEOUT_MS,
        admit: (record) => {
          if (!record.desktop) {
            throw new ApiError(
              "desktop_unavailable",
              `sandbox ${record.id} has no desktop: create it from the desktop template or with desktop: {width, height}`,
            );
          }
        },
        // X and the session belong to the sandbox's user, never to root: the desktop template sets no default
        // user (its commands run as root), so its uid-1000 account is named here.
        user: (record) => record.user ?? DESKTOP_USER,
        unavailable: (reason) => new ApiError("desktop_unavailable", `this sandbox cannot run a desktop: ${reason}`),
        env: (record, listen, token) => ({
          SANDPIT_DESKTOP_LISTEN: listen,
          SANDPIT_DESKTOP_TOKEN: token,
          SANDPIT_DESKTOP_WIDTH: String(record.desktop!.width),
          SANDPIT_DESKTOP_HEIGHT: String(record.desktop!.height),
          SANDPIT_DESKTOP_DPI: String(record.desktop!.dpi),
        }),
      },
      sandboxes,
      exec,
    );
  }

  /** Starts a new desktop sandbox's display at once, so that it is up by the client's first call. */
  async warmUp(sandboxId: string): Promise<void> {
    const record = await this.sandboxes.getUnscoped(sandboxId);
    // A pool's sandbox starts its desktop as its user's when it is checked out (first use).
    if (record?.status !== "running" || !record.desktop || record.metadata[POOL_TAG] !== undefined) return;
    // Its client starts the display (E2B's desktop SDK): a display started here would be the one it finds.
    if (record.desktop.startedByClient) return;
    await this.server.ensure(ownOrg(record), record);
  }

  async state(org: OrgRecord, sandboxId: string): Promise<DesktopState> {
    return desktopStateSchema.parse(await this.server.call(org, sandboxId, "GET", "/"));
  }

  async screenshot(org: OrgRecord, sandboxId: string, query: DesktopScreenshotQuery): Promise<DesktopScreenshot> {
    const parsed = desktopScreenshotQuerySchema.safeParse(query);
    if (!parsed.success) throw validationError(parsed.error, "query");
    const search = new URLSearchParams();
    for (const [key, value] of Object.entries(parsed.data)) if (value !== undefined) search.set(key, String(value));
    const res = await this.server.open(org, sandboxId, "GET", `/screenshot?${search}`);
    this.sandboxes.touch(sandboxId);
    return { png: await buffer(res), captureMs: timing(res, "capture"), encodeMs: timing(res, "encode") };
  }

  /** Moves, clicks, drags or scrolls; answers where the pointer is afterwards. */
  async mouse(org: OrgRecord, sandboxId: string, body: DesktopMouseRequest): Promise<DesktopPoint> {
    const parsed = desktopMouseRequestSchema.safeParse(body);
    if (!parsed.success) throw validationError(parsed.error);
    return this.act(org, sandboxId, "/mouse", parsed.data, desktopPointSchema);
  }

  async keyboard(org: OrgRecord, sandboxId: string, body: DesktopKeyboardRequest): Promise<void> {
    const parsed = desktopKeyboardRequestSchema.safeParse(body);
    if (!parsed.success) throw validationError(parsed.error);
    await this.act(org, sandboxId, "/keyboard", parsed.data, z.unknown());
  }

  async windows(org: OrgRecord, sandboxId: string): Promise<DesktopWindow[]> {
    const answer = await this.server.call(org, sandboxId, "GET", "/windows");
    return z.object({ windows: z.array(desktopWindowSchema) }).parse(answer).windows;
  }

  /** Activates the window whose id (as the path gives it) is `windowId`; a bad id is a 400 naming `field`. */
  async focus(org: OrgRecord, sandboxId: string, rawWindowId: string | undefined, field = "windowId"): Promise<void> {
    const windowId = Number(rawWindowId);
    if (!/^\d{1,10}$/.test(rawWindowId ?? "") || !Number.isSafeInteger(windowId)) {
      throw new ApiError("validation_failed", `Invalid request: ${field}: must be a window's numeric id`, {
        fields: [{ field, rule: "type", message: "must be a window's numeric id" }],
      });
    }
    await this.act(org, sandboxId, `/windows/${windowId}/focus`, undefined, z.unknown());
  }

  async launch(org: OrgRecord, sandboxId: string, body: DesktopLaunchRequest): Promise<{ pid: number }> {
    const parsed = desktopLaunchRequestSchema.safeParse(body);
    if (!parsed.success) throw validationError(parsed.error);
    return this.act(org, sandboxId, "/launch", parsed.data, desktopLaunchedSchema);
  }

  private async act<T>(org: OrgRecord, sandboxId: string, path: string, body: unknown, schema: z.ZodType<T>) {
    const answer = schema.parse(await this.server.call(org, sandboxId, "POST", path, body ?? {}));
    this.sandboxes.touch(sandboxId);
    return answer;
  }
}

/** A time the desktop server measured (x-desktop-<name>-ms). */
function timing(res: http.IncomingMessage, name: string): number {
  return Number(res.headers[`x-desktop-${name}-ms`] ?? 0);
}
