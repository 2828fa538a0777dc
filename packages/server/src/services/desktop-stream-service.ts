import http from "node:http";
import {
  DESKTOP_STREAM_PORT,
  DESKTOP_VNC_PORT,
  type DesktopStream,
  type StartDesktopStreamRequest,
  startDesktopStreamRequestSchema,
} from "@sandpit/contract";
import type { DesktopStreamRecord, OrgRecord, SandboxRecord } from "../domain/index.js";
import { ApiError, validationError } from "../errors.js";
import { newToken, randomBase32 } from "../lib/ids.js";
import { tokensEqual } from "../lib/server-key.js";
import { DESKTOP_SERVER_DIR } from "../runtime/gvisor-runtime.js";
import type { Store } from "../store/store.js";
import type { ExecService } from "./exec-service.js";
import { type PortService, portPath, TRAFFIC_TOKEN_QUERY } from "./port-service.js";
import type { SandboxService } from "./sandbox-service.js";

// Up to three x11vnc starts of a few seconds each (streamScript), then websockify.
const STREAM_READY_TIMEOUT_MS = 40_000;
/** How often the stream's script checks that x11vnc still serves a viewer (see streamScript). */
const VNC_CHECK_S = 10;
/** Exits 0 when the VNC server on the port given serves a viewer a picture (packages/agent/desktop). */
const VNC_PROBE = `${DESKTOP_SERVER_DIR}/vnc_probe.py`;
/** noVNC as Debian's `novnc` package installs it in the desktop template. */
const NOVNC_WEB_DIR = "/usr/share/novnc";

/**
 * The stream's two programs as they run: the clean-up below finds them by their command lines (anchored, so
 * that the clean-up's own shell, whose script holds these words, is not one of them).
 */
const VNC_COMMAND = `x11vnc -display :0 -rfbport ${DESKTOP_VNC_PORT} -localhost -forever -shared -nopw -nolookup -threads -quiet`;
const WEBSOCKIFY_COMMAND = `websockify --web ${NOVNC_WEB_DIR} ${DESKTOP_STREAM_PORT} 127.0.0.1:${DESKTOP_VNC_PORT}`;

/**
 * Before a start: the display must answer, and the stream's ports must be free. A stream stopped while its
 * sandbox was paused left its processes behind (they came back with the resume): they go first. Anything
 * else holding the ports is the sandbox's own business (409). On success it prints the display's owner: the
 * stream runs as that user, since x11vnc reads the screen through shared memory that the X server (e.g.
 * `user`'s Xvfb) can attach only when it has the same owner (else X_ShmAttach fails with BadAccess and
 * x11vnc exits).
 */
const PREFLIGHT_SCRIPT = `
xdpyinfo -display :0 >/dev/null 2>&1 || exit 10
owner=$(ps -o uid= -C Xvfb,Xorg,Xvnc,Xephyr | head -n 1 | tr -d " ")
owner=\${owner:-$(id -u)}
pkill -KILL -u "$owner" -f -- '^${VNC_COMMAND}'
pkill -KILL -u "$owner" -f -- '^[^ ]*python3 [^ ]*${WEBSOCKIFY_COMMAND}'
listening() { (exec 3<>/dev/tcp/127.0.0.1/$1) 2>/dev/null; }
for i in $(seq 1 100); do
  listening ${DESKTOP_VNC_PORT} || listening ${DESKTOP_STREAM_PORT} || { echo "$owner"; exit 0; }
  sleep 0.05
done
listening ${DESKTOP_VNC_PORT} && echo ${DESKTOP_VNC_PORT} || echo ${DESKTOP_STREAM_PORT}
exit 11`;

/**
 * The stream's processes, one background command (one process group, so one signal ends them all): x11vnc
 * on the display, reachable from inside the sandbox only, and websockify, which serves noVNC's page and
 * bridges its WebSocket to x11vnc on the port the proxy reaches. Under gVisor on a loaded host an x11vnc
 * sometimes stops serving viewers (no banner for minutes, or a banner and then no answer to the handshake;
 * the unthreaded one greets only after 5-50 s, so it is run threaded): the script starts websockify once
 * x11vnc serves a probe viewer a picture (VNC_PROBE), and then probes it every few seconds, replacing one
 * that fails — a viewer stuck on it is disconnected and noVNC (\`reconnect\`) connects again to the new one.
 * websockify, seen to stop answering new connections (a page stalled half loaded), is probed for noVNC's
 * page and replaced with its children the same way. When x11vnc exits by itself, so does the command.
 */
function streamScript(viewOnly: boolean): string {
  return `
serves() {
  python3 ${VNC_PROBE} rfb ${DESKTOP_VNC_PORT}
}
start_vnc() {
  for attempt in 1 2 3; do
    ${VNC_COMMAND}${viewOnly ? " -viewonly" : ""} &
    vnc=$!
    for i in $(seq 1 200); do
      (exec 3<>/dev/tcp/127.0.0.1/${DESKTOP_VNC_PORT}) 2>/dev/null && break
      kill -0 $vnc 2>/dev/null || { wait $vnc; exit; }
      sleep 0.05
    done
    serves && return 0
    echo "x11vnc serves no viewer (attempt $attempt): replacing it" >&2
    kill -KILL $vnc 2>/dev/null
    wait $vnc 2>/dev/null
  done
  exit 12
}
start_web() {
  ${WEBSOCKIFY_COMMAND} &
  web=$!
}
start_vnc
start_web
while kill -0 $web 2>/dev/null; do
  sleep ${VNC_CHECK_S}
  kill -0 $vnc 2>/dev/null || { wait $vnc; status=$?; kill $web; exit $status; }
  if ! serves; then
    echo "x11vnc stopped serving viewers: replacing it" >&2
    kill -KILL $vnc 2>/dev/null
    wait $vnc 2>/dev/null
    start_vnc
  fi
  if ! python3 ${VNC_PROBE} http ${DESKTOP_STREAM_PORT}; then
    echo "websockify stopped answering: replacing it" >&2
    pkill -KILL -P $web 2>/dev/null
    kill -KILL $web 2>/dev/null
    wait $web 2>/dev/null
    start_web
  fi
done
wait $web`;
}

/**
 * Live views of sandbox desktops: a VNC server on the sandbox's display and noVNC in front of it, reached
 * through the port proxy with a token of the stream's own. While a stream is live its token — and only its
 * token — opens the sandbox's stream port: not the sandbox's traffic token, not `publicPorts`; and the
 * stream's token opens no other port. Streams are kept in the store, so a restarted server still honours
 * (and can stop) the streams it started; their processes live in the sandbox and go through pause and
 * resume with it.
 */
export class DesktopStreamService {
  /** One start or stop at a time per sandbox: each replaces processes inside it. */
  private readonly busy = new Map<string, Promise<unknown>>();

  constructor(
    private readonly sandboxes: SandboxService,
    private readonly exec: ExecService,
    private readonly store: Store,
    /** Builds the stream's URL (by host name when the server has a domain). */
    private readonly ports: PortService,
  ) {}

  /**
   * Starts the live view, or returns the live one when it already serves what is asked (same `viewOnly`,
   * processes running); otherwise the new stream replaces it, and the old token stops working.
   */
  start(org: OrgRecord, sandboxId: string, body: StartDesktopStreamRequest, baseUrl: string): Promise<DesktopStream> {
    const parsed = startDesktopStreamRequestSchema.safeParse(body);
    if (!parsed.success) throw validationError(parsed.error);
    return this.oneAtATime(sandboxId, async () => {
      const record = await this.sandboxes.requireUsable(org, sandboxId);
      const live = await this.store.liveDesktopStream(record.id);
      if (live?.viewOnly === parsed.data.viewOnly && (await this.serving(org, live)))
        return streamView(live, baseUrl, this.ports);
      if (live) await this.stopRecord(org, live);
      return streamView(await this.launch(org, record, parsed.data.viewOnly), baseUrl, this.ports);
    });
  }

  async get(org: OrgRecord, sandboxId: string, baseUrl: string): Promise<DesktopStream> {
    const record = await this.sandboxes.get(org, sandboxId);
    const live = await this.store.liveDesktopStream(record.id);
    if (!live)
      throw new ApiError("not_found", `sandbox ${sandboxId} has no live view (POST …/desktop/stream starts one)`);
    return streamView(live, baseUrl, this.ports);
  }

  /** Stops the live view: its processes end and its token opens nothing any more. Idempotent. */
  stop(org: OrgRecord, sandboxId: string): Promise<void> {
    return this.oneAtATime(sandboxId, async () => {
      const record = await this.sandboxes.get(org, sandboxId);
      const live = await this.store.liveDesktopStream(record.id);
      if (live) await this.stopRecord(org, live);
    });
  }

  /**
   * Whether `token` opens the stream port of this sandbox: `undefined` when it has no live stream (the
   * port is then an ordinary port, e.g. for `@e2b/desktop`'s own noVNC), else an answer that never depends
   * on the sandbox's other tokens.
   */
  async streamAccess(sandboxId: string, token: string | undefined): Promise<"open" | "missing" | "wrong" | undefined> {
    const live = await this.store.liveDesktopStream(sandboxId);
    if (!live) return undefined;
    if (!token) return "missing";
    return tokensEqual(token, live.token) ? "open" : "wrong";
  }

  private async launch(org: OrgRecord, record: SandboxRecord, viewOnly: boolean): Promise<DesktopStreamRecord> {
    const check = await this.exec.run(org, record.id, { args: ["bash", "-c", PREFLIGHT_SCRIPT], timeoutMs: 15_000 });
    if (check.exitCode === 10) {
      throw new ApiError("conflict", "this sandbox has no display :0 to stream (a desktop-template sandbox has one)");
    }
    if (check.exitCode === 11) {
      throw new ApiError("conflict", `port ${check.stdout.trim()} in the sandbox is taken by another program`);
    }
    if (check.exitCode !== 0) {
      throw new ApiError("sandbox_failed", `checking the display failed: ${check.stderr.trim() || check.exitCode}`);
    }
    const { commandId } = await this.exec.startBackground(org, record.id, {
      args: ["bash", "-c", streamScript(viewOnly)],
      user: check.stdout.trim(),
    });
    await this.waitUntilServing(org, record, commandId);
    const stream: DesktopStreamRecord = {
      id: `dst_${randomBase32(20)}`,
      sandboxId: record.id,
      viewOnly,
      token: newToken(),
      commandId,
      startedAt: Date.now(),
      stoppedAt: null,
    };
    await this.store.replaceDesktopStream(stream);
    return stream;
  }

  /**
   * Revokes the token first (nobody new gets in), then ends the processes if the sandbox runs (a paused
   * sandbox's come back with it, unreachable without a live stream; the next start removes them).
   */
  private async stopRecord(org: OrgRecord, stream: DesktopStreamRecord): Promise<void> {
    await this.store.stopDesktopStream(stream.id, Date.now());
    const sandbox = await this.sandboxes.get(org, stream.sandboxId);
    if (sandbox.status !== "running") return;
    await this.exec.kill(org, stream.sandboxId, stream.commandId, "SIGKILL").catch((e: unknown) => {
      // Already gone (ended by someone inside the sandbox): nothing left to stop.
      if (!(e instanceof ApiError && e.status === 404)) throw e;
    });
  }

  /** Whether the stream's processes still run (a paused sandbox's are kept: they come back with it). */
  private async serving(org: OrgRecord, stream: DesktopStreamRecord): Promise<boolean> {
    const command = await this.exec.get(org, stream.sandboxId, stream.commandId);
    return command.status === "running";
  }

  /** Polls noVNC's page on the sandbox's address until it answers, or the processes ended. */
  private async waitUntilServing(org: OrgRecord, record: SandboxRecord, commandId: string): Promise<void> {
    const deadline = Date.now() + STREAM_READY_TIMEOUT_MS;
    while (Date.now() < deadline) {
      const { host, port } = await this.sandboxes.portAddress(record, DESKTOP_STREAM_PORT);
      if (await answers(host, port)) return;
      const command = await this.exec.get(org, record.id, commandId);
      if (command.status !== "running") {
        throw new ApiError(
          "sandbox_failed",
          `the live view's processes ended (exit ${command.exitCode}); their output: GET /v1/sandboxes/${record.id}/commands/${commandId}/logs`,
        );
      }
      await new Promise((r) => setTimeout(r, 100));
    }
    await this.exec.kill(org, record.id, commandId, "SIGKILL").catch(() => undefined);
    throw new ApiError("sandbox_failed", "the live view did not start in time");
  }

  private oneAtATime<T>(sandboxId: string, work: () => Promise<T>): Promise<T> {
    const before = this.busy.get(sandboxId) ?? Promise.resolve();
    const run = before.catch(() => undefined).then(work);
    const settled = run.catch(() => undefined);
    this.busy.set(sandboxId, settled);
    void settled.then(() => {
      if (this.busy.get(sandboxId) === settled) this.busy.delete(sandboxId);
    });
    return run;
  }
}

/** Whether noVNC's page answers 200 on the sandbox's address. */
function answers(host: string, port: number): Promise<boolean> {
  return new Promise((resolve) => {
    const req = http.get({ host, port, path: "/vnc.html", agent: false, timeout: 2_000 }, (res) => {
      res.resume();
      resolve(res.statusCode === 200);
    });
    req.on("timeout", () => req.destroy());
    req.on("error", () => resolve(false));
  });
}

/**
 * The stream as the API shows it. Its URL is noVNC's page through the port proxy with the token as a leading
 * path segment, so the page's own files load with it: by the port's host name when the server has a domain
 * (the page, which the sandbox serves, then has an origin of its own, not the API's or the console's), else
 * by path. noVNC builds its WebSocket URL from `path` relative to the host, so `path` is the whole proxied
 * websockify path, token included. `reconnect` brings the picture back by itself after a pause and resume.
 */
export function streamView(stream: DesktopStreamRecord, baseUrl: string, ports: PortService): DesktopStream {
  const origin = ports.hostOrigin(baseUrl, stream.sandboxId, DESKTOP_STREAM_PORT);
  const tokenSegment = `${TRAFFIC_TOKEN_QUERY}/${encodeURIComponent(stream.token)}`;
  const base = origin
    ? `${origin}/${tokenSegment}`
    : `${baseUrl}${portPath(stream.sandboxId, DESKTOP_STREAM_PORT, stream.token)}`;
  const query = new URLSearchParams({ autoconnect: "true", reconnect: "true", resize: "scale" });
  if (stream.viewOnly) query.set("view_only", "true");
  query.set("path", `${new URL(base).pathname.slice(1)}/websockify`);
  return {
    streamId: stream.id,
    viewOnly: stream.viewOnly,
    url: `${base}/vnc.html?${query.toString()}`,
    token: stream.token,
    startedAt: new Date(stream.startedAt).toISOString(),
    expiresAt: null,
  };
}
