import {
  type CreateTemplateRequest,
  listTemplatesResponseSchema,
  type Template,
  type TemplateBuildEvent,
  templateBuildEventSchema,
  templateSchema,
} from "@sandpit/contract";
import { ApiClient } from "./api-client.js";
import { type ConnectionOptions, resolveConfig } from "./config.js";
import { SandpitError } from "./errors.js";
import { parseNdjsonEvents } from "./ndjson.js";

export type { Template, TemplateBuildEvent };

/** A template of your own: a Dockerfile (subset) and the files its COPY steps read. */
export interface TemplateDefinition extends Omit<CreateTemplateRequest, "context"> {
  /** The build context as a tar or tar.gz archive. */
  context?: Uint8Array;
}

/** Runs a build's events to their end, through the callbacks; the template when it is done. */
async function untilDone(
  name: string,
  events: AsyncGenerator<TemplateBuildEvent, void, undefined>,
  callbacks: BuildCallbacks,
): Promise<Template> {
  for await (const event of events) {
    callbacks.onEvent?.(event);
    if (event.type === "done") return event.template;
    if (event.type === "error") throw new SandpitError(event.message, { code: "build_failed" });
  }
  throw new SandpitError(`the build stream of ${name} ended without a result`, { code: "build_failed" });
}

/** Callbacks for {@link Templates.build}. */
export interface BuildCallbacks {
  /** Called with every event of the build: `progress`, `log`, then `done` or `error`. */
  onEvent?: (event: TemplateBuildEvent) => void;
}

/**
 * The root filesystems sandboxes start from: list them, inspect one, build one.
 *
 * @example
 * ```ts
 * for (const template of await Templates.list()) console.log(template.name, template.status);
 * ```
 */
export class Templates {
  private constructor() {}

  /**
   * Lists the templates the server knows, built or not.
   *
   * @example
   * ```ts
   * const ready = (await Templates.list()).filter((t) => t.status === "ready");
   * ```
   */
  static async list(opts?: ConnectionOptions): Promise<Template[]> {
    const { templates } = await client(opts).json(listTemplatesResponseSchema, "/templates");
    return templates;
  }

  /**
   * Fetches one template by name.
   *
   * @example
   * ```ts
   * const template = await Templates.get("python");
   * ```
   */
  static async get(name: string, opts?: ConnectionOptions): Promise<Template> {
    return client(opts).json(templateSchema, `/templates/${encodeURIComponent(name)}`);
  }

  /**
   * Builds a template and streams the build's events (`progress`, `log`, then `done` or `error`).
   *
   * @example
   * ```ts
   * for await (const event of Templates.buildEvents("python")) {
   *   if (event.type === "progress") console.log(event.phase, event.percent);
   * }
   * ```
   */
  static async *buildEvents(
    name: string,
    opts?: ConnectionOptions,
  ): AsyncGenerator<TemplateBuildEvent, void, undefined> {
    const response = await client(opts).stream(`/templates/${encodeURIComponent(name)}/build`, {
      method: "POST",
      // A second build request joins the running build.
      repeatable: true,
      headers: { accept: "application/x-ndjson" },
    });
    yield* parseNdjsonEvents(templateBuildEventSchema, response.body, response.requestId);
  }

  /**
   * Builds a template and resolves with it once the build is done; throws a {@link SandpitError}
   * with code `build_failed` when the build fails.
   *
   * @example
   * ```ts
   * const template = await Templates.build("python", {
   *   onEvent: (e) => e.type === "progress" && console.log(`${e.phase} ${e.percent ?? "?"}%`),
   * });
   * ```
   */
  static async build(name: string, callbacks: BuildCallbacks = {}, opts?: ConnectionOptions): Promise<Template> {
    return untilDone(name, Templates.buildEvents(name, opts), callbacks);
  }

  /**
   * Builds a template of your own from a Dockerfile and streams the build's events; each RUN runs in
   * a sandbox and its output arrives as `log` events.
   *
   * @example
   * ```ts
   * for await (const e of Templates.createEvents({ name: "app", dockerfile: "FROM node24\nRUN npm i -g tsx" })) {
   *   if (e.type === "log") console.log(e.line);
   * }
   * ```
   */
  static async *createEvents(
    definition: TemplateDefinition,
    opts?: ConnectionOptions,
  ): AsyncGenerator<TemplateBuildEvent, void, undefined> {
    const { context, ...rest } = definition;
    const response = await client(opts).stream("/templates", {
      method: "POST",
      headers: { accept: "application/x-ndjson" },
      json: { ...rest, ...(context ? { context: Buffer.from(context).toString("base64") } : {}) },
    });
    yield* parseNdjsonEvents(templateBuildEventSchema, response.body, response.requestId);
  }

  /**
   * Builds a template of your own and resolves with it once it is ready; throws a {@link SandpitError}
   * with code `build_failed` (the message names the Dockerfile line) when a step fails.
   *
   * @example
   * ```ts
   * await Templates.create({ name: "app", dockerfile: "FROM python3.13\nRUN pip install requests" });
   * const sandbox = await Sandbox.create({ template: "app" });
   * ```
   */
  static async create(
    definition: TemplateDefinition,
    callbacks: BuildCallbacks = {},
    opts?: ConnectionOptions,
  ): Promise<Template> {
    return untilDone(definition.name, Templates.createEvents(definition, opts), callbacks);
  }

  /** Deletes a template of your own (sandboxes running on it keep working). */
  static async delete(name: string, opts?: ConnectionOptions): Promise<void> {
    await client(opts).empty(`/templates/${encodeURIComponent(name)}`, { method: "DELETE" });
  }
}

function client(opts: ConnectionOptions | undefined): ApiClient {
  return new ApiClient(resolveConfig(opts));
}
