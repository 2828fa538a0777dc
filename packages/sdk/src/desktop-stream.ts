import { type DesktopStream, desktopStreamSchema } from "@sandpit/contract";
import type { ApiClient } from "./api-client.js";
import { NotFoundError, SandboxNotFoundError } from "./errors.js";

export type { DesktopStream };

/** How to start a live view. */
export interface StartDesktopStreamOptions {
  /** Watch only: keyboard and mouse input from viewers is ignored by the VNC server. */
  viewOnly?: boolean;
}

/**
 * The live view of a sandbox's desktop: a noVNC page (`url`) that opens through Sandpit's port proxy with
 * a token of the stream's own. `sandbox.desktop.stream`.
 */
export class DesktopStreams {
  readonly #sandboxId: string;
  readonly #client: ApiClient;

  /** @internal */
  constructor(sandboxId: string, client: ApiClient) {
    this.#sandboxId = sandboxId;
    this.#client = client;
  }

  #path(): string {
    return `/sandboxes/${encodeURIComponent(this.#sandboxId)}/desktop/stream`;
  }

  /**
   * Starts the live view and returns it; a running one that is already as asked is returned as it is,
   * otherwise the new stream replaces it (with a new token: the old URL stops working).
   */
  start(opts: StartDesktopStreamOptions = {}): Promise<DesktopStream> {
    return this.#client.json(desktopStreamSchema, this.#path(), { method: "POST", json: opts });
  }

  /** The running live view, or null when none runs. */
  async get(): Promise<DesktopStream | null> {
    try {
      return await this.#client.json(desktopStreamSchema, this.#path());
    } catch (e) {
      if (e instanceof NotFoundError && !(e instanceof SandboxNotFoundError)) return null;
      throw e;
    }
  }

  /** Stops the live view: its processes end and its URL opens nothing any more (idempotent). */
  async stop(): Promise<void> {
    await this.#client.empty(this.#path(), { method: "DELETE" });
  }
}
