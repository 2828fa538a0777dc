import type { OrgRecord } from "../domain/index.js";
import type { EventService } from "./event-service.js";
import type { ExecService } from "./exec-service.js";

/** One line of a sandbox's log. */
export interface SandboxLogEntry {
  at: number;
  level: "info" | "warn" | "error";
  /** What wrote it: `lifecycle` (Sandpit's events), `process` (commands starting and ending), `output`. */
  logger: "lifecycle" | "process" | "output";
  message: string;
  fields: Record<string, string>;
}

/** Background commands whose output a log reads (the newest ones). */
const OUTPUT_COMMANDS = 20;
/** Output lines per background command. */
const OUTPUT_LINES = 1000;

/**
 * A sandbox's log, gathered from what Sandpit keeps — there is no log file of a sandbox: its lifecycle
 * events, every command's start (argv, cwd, pid) and end (exit code) at their recorded times (an end
 * nobody asked about is recorded when the log is read), and the
 * output of its newest background commands (its main process among them) while the sandbox runs, read
 * back from the agent. The agent keeps output without times, so output lines carry their command's start
 * time. Sorted by time; `since` (ms) keeps entries from then on.
 */
export async function sandboxLog(
  services: { exec: ExecService; events: EventService },
  org: OrgRecord,
  sandboxId: string,
  since = 0,
): Promise<SandboxLogEntry[]> {
  const entries: SandboxLogEntry[] = [];
  const { events } = await services.events.list(org, { sandboxId, order: "asc", limit: 1000 });
  for (const e of events) {
    const fields = Object.fromEntries(
      Object.entries(e.data).map(([k, v]) => [k, typeof v === "string" ? v : JSON.stringify(v)]),
    );
    entries.push({
      at: e.at,
      level: /failed|error|oom|crash/.test(e.type) ? "error" : "info",
      logger: "lifecycle",
      message: e.type,
      fields,
    });
  }

  // A command's end is recorded when someone asks about it: ask for those still recorded as running.
  const commands = await Promise.all(
    (await services.exec.list(org, sandboxId)).map((c) =>
      c.status === "running" ? services.exec.get(org, sandboxId, c.commandId).catch(() => c) : c,
    ),
  );
  for (const c of commands) {
    const base = { commandId: c.commandId, cmd: c.command.join(" "), cwd: c.cwd };
    entries.push({
      at: Date.parse(c.startedAt),
      level: "info",
      logger: "process",
      message: "process started",
      fields: { ...base, ...(c.pid !== null ? { pid: String(c.pid) } : {}) },
    });
    if (c.finishedAt) {
      entries.push({
        at: Date.parse(c.finishedAt),
        level: c.exitCode === 0 ? "info" : "warn",
        logger: "process",
        message: `process ${c.status}`,
        fields: { ...base, exitCode: String(c.exitCode), ...(c.timedOut ? { timedOut: "true" } : {}) },
      });
    }
  }

  for (const c of commands.filter((c) => c.background).slice(-OUTPUT_COMMANDS)) {
    const at = Date.parse(c.startedAt);
    let lines = 0;
    const pending = { stdout: "", stderr: "" };
    const flush = (stream: "stdout" | "stderr", text: string) => {
      if (lines++ >= OUTPUT_LINES) return;
      entries.push({
        at,
        level: stream === "stderr" ? "warn" : "info",
        logger: "output",
        message: text,
        fields: { commandId: c.commandId, stream },
      });
    };
    try {
      for await (const e of services.exec.outputEvents(org, sandboxId, c.commandId, { follow: false })) {
        if (e.type !== "stdout" && e.type !== "stderr") continue;
        const parts = (pending[e.type] + e.data.toString("utf8")).split("\n");
        pending[e.type] = parts.pop() ?? "";
        for (const line of parts) flush(e.type, line);
      }
      for (const stream of ["stdout", "stderr"] as const) if (pending[stream]) flush(stream, pending[stream]);
    } catch {
      // A sandbox that is paused or gone, or a command whose output the agent no longer holds: its
      // starts and ends above are what is left.
    }
  }

  return entries.filter((e) => e.at >= since).sort((a, b) => a.at - b.at);
}
