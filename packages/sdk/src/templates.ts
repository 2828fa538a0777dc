import {
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
    for await (const event of Templates.buildEvents(name, opts)) {
      callbacks.onEvent?.(event);
      if (event.type === "done") return event.template;
      if (event.type === "error") throw new SandpitError(event.message, { code: "build_failed" });
    }
    throw new SandpitError(`the build stream of ${name} ended without a result`, { code: "build_failed" });
  }
}

function client(opts: ConnectionOptions | undefined): ApiClient {
  return new ApiClient(resolveConfig(opts));
}
