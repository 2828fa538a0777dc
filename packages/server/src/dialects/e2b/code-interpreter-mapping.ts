import { type CodeContext, type CodeEvent, type CodeLanguage, envSchema } from "@sandpit/contract";
import { z } from "zod";
import { ApiError } from "../../errors.js";

/** The port `@e2b/code-interpreter` addresses its in-sandbox code server on. */
export const CODE_INTERPRETER_PORT = 49999;

/** E2B's language names (any case, spaces around) as Sandpit's. */
const LANGUAGES: Readonly<Record<string, CodeLanguage>> = {
  python: "python",
  python3: "python",
  javascript: "javascript",
  js: "javascript",
  bash: "bash",
};

/** An E2B language, or undefined for none (E2B reads an empty name as none); a language Sandpit lacks is a 400. */
export function languageFrom(name: string | null | undefined): CodeLanguage | undefined {
  const wanted = (name ?? "").trim().toLowerCase();
  if (wanted === "") return undefined;
  const language = LANGUAGES[wanted];
  if (!language) {
    throw new ApiError(
      "bad_request",
      `language ${JSON.stringify(name)} is not available: use python, javascript (js) or bash`,
    );
  }
  return language;
}

/** `POST /execute`: E2B's cell request. */
export const executeRequestSchema = z.object({
  code: z.string(),
  context_id: z.string().nullish(),
  language: z.string().nullish(),
  env_vars: envSchema.nullish(),
});

/** `POST /contexts`: E2B's new context. */
export const createContextRequestSchema = z.object({
  language: z.string().nullish(),
  cwd: z.string().nullish(),
});

/** E2B's context: `{id, language, cwd}`. */
export function contextOf(context: CodeContext) {
  return { id: context.id, language: context.language, cwd: context.cwd };
}

/** A MIME type of a result bundle and the field E2B gives it; the others go to `extra`. */
const RESULT_FIELDS: readonly (readonly [mime: string, field: string])[] = [
  ["text/plain", "text"],
  ["text/html", "html"],
  ["text/markdown", "markdown"],
  ["image/svg+xml", "svg"],
  ["image/png", "png"],
  ["image/jpeg", "jpeg"],
  ["application/pdf", "pdf"],
  ["text/latex", "latex"],
  ["application/json", "json"],
  ["application/javascript", "javascript"],
  ["e2b/data", "data"],
  ["e2b/chart", "chart"],
];

/** The plain-text form of a result as E2B gives it: a string's repr without its quotes (`'a'` → `a`). */
function plainText(value: unknown): unknown {
  if (typeof value !== "string" || value.length < 2) return value;
  const quote = value[0];
  return (quote === "'" || quote === '"') && value.endsWith(quote) ? value.slice(1, -1) : value;
}

/** One line of E2B's NDJSON cell stream. */
export type E2bOutputLine = Record<string, unknown> & { type: string };

/** A native result event as E2B's `result` line: each known MIME type in its field, the rest in `extra`. */
export function resultLineOf(event: Extract<CodeEvent, { type: "result" }>): E2bOutputLine {
  const line: E2bOutputLine = { type: "result" };
  const rest: Record<string, unknown> = { ...event.data };
  for (const [mime, field] of RESULT_FIELDS) {
    if (!(mime in rest)) continue;
    line[field] = mime === "text/plain" ? plainText(rest[mime]) : rest[mime];
    delete rest[mime];
  }
  if (Object.keys(rest).length > 0) line.extra = rest;
  line.is_main_result = event.isMainResult;
  return line;
}

/** A native cell event as E2B's stream lines (`end` becomes the execution count, when there is one). */
export function linesOf(event: CodeEvent, at: Date = new Date()): E2bOutputLine[] {
  switch (event.type) {
    case "stdout":
    case "stderr":
      return [{ type: event.type, text: event.text, timestamp: at.toISOString() }];
    case "result":
      return [resultLineOf(event)];
    case "error":
      return [{ type: "error", name: event.name, value: event.value, traceback: event.traceback }];
    case "end":
      return event.executionCount === null
        ? []
        : [{ type: "number_of_executions", execution_count: event.executionCount }];
  }
}

/** A native cell's events as E2B's stream lines. */
export async function* e2bLines(events: AsyncIterable<CodeEvent>): AsyncGenerator<E2bOutputLine> {
  for await (const event of events) yield* linesOf(event);
}

/** The last line of a cell stream whose cell failed under way: an error the SDK shows as `execution.error`. */
export function failureLineOf(e: unknown): E2bOutputLine {
  return { type: "error", name: "SandboxError", value: e instanceof Error ? e.message : String(e), traceback: "" };
}

/** The code interpreter's routes: what a method and path ask for, or undefined for no such path. */
export type CodeInterpreterRoute =
  | { kind: "health" }
  | { kind: "execute" }
  | { kind: "create-context" }
  | { kind: "list-contexts" }
  | { kind: "restart-context"; contextId: string }
  | { kind: "delete-context"; contextId: string };

const CONTEXT_PATH = /^\/contexts\/([^/]+)$/;

function contextIdOf(segment: string): string {
  try {
    return decodeURIComponent(segment);
  } catch {
    throw new ApiError("bad_request", `context id ${segment} is not valid percent-encoding`);
  }
}
const RESTART_PATH = /^\/contexts\/([^/]+)\/restart$/;

/** The route of a request; a known path with another method is a 405, an unknown path a 404. */
export function routeOf(method: string, pathname: string): CodeInterpreterRoute {
  const path = pathname.length > 1 ? pathname.replace(/\/+$/, "") : pathname;
  const byMethod = (routes: Partial<Record<string, CodeInterpreterRoute>>): CodeInterpreterRoute => {
    const route = routes[method];
    if (route) return route;
    throw new ApiError("method_not_allowed", `${method} ${path} is not allowed (${Object.keys(routes).join(", ")})`);
  };
  if (path === "/health") return byMethod({ GET: { kind: "health" } });
  if (path === "/execute") return byMethod({ POST: { kind: "execute" } });
  if (path === "/contexts") return byMethod({ GET: { kind: "list-contexts" }, POST: { kind: "create-context" } });
  const restart = RESTART_PATH.exec(path);
  if (restart) return byMethod({ POST: { kind: "restart-context", contextId: contextIdOf(restart[1]!) } });
  const context = CONTEXT_PATH.exec(path);
  if (context) return byMethod({ DELETE: { kind: "delete-context", contextId: contextIdOf(context[1]!) } });
  throw new ApiError("not_found", `the code interpreter has no ${method} ${path}`);
}
