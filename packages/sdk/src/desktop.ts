import {
  type DesktopPoint,
  type DesktopScreenshotQuery,
  type DesktopState,
  type DesktopWindow,
  desktopLaunchedSchema,
  desktopPointSchema,
  desktopStateSchema,
  desktopWindowSchema,
} from "@sandpit/contract";
import { z } from "zod";
import type { ApiClient } from "./api-client.js";
import { DesktopStreams } from "./desktop-stream.js";

export type { DesktopPoint, DesktopState, DesktopWindow };

/** A mouse button. */
export type MouseButton = "left" | "right" | "middle";
/** Which way to scroll. */
export type ScrollDirection = "up" | "down" | "left" | "right";

/** Which part of the screen a screenshot shows, and how much smaller. */
export type ScreenshotOptions = DesktopScreenshotQuery;

const windowsSchema = z.object({ windows: z.array(desktopWindowSchema) });

/**
 * The sandbox's desktop (a sandbox of the `desktop` template, or created with `desktop: {width, height}`);
 * reached as `sandbox.desktop`. Coordinates are pixels from the screen's top left corner.
 *
 * @example
 * ```ts
 * const sandbox = await Sandbox.create({ template: "desktop" });
 * await sandbox.desktop.launch("xfce4-terminal");
 * await sandbox.desktop.type("echo héllo\n");
 * await writeFile("screen.png", await sandbox.desktop.screenshot());
 * ```
 */
export class Desktop {
  /** The live view (a noVNC page through Sandpit's port proxy): `start`, `get`, `stop`. */
  readonly stream: DesktopStreams;
  readonly #sandboxId: string;
  readonly #client: ApiClient;

  /** @internal Reached as `sandbox.desktop`. */
  constructor(sandboxId: string, client: ApiClient) {
    this.#sandboxId = sandboxId;
    this.#client = client;
    this.stream = new DesktopStreams(sandboxId, client);
  }

  /** A PNG of the screen, or of a region (`x`, `y`, `width`, `height`), scaled down by `scale` (0–1]. */
  screenshot(opts: ScreenshotOptions = {}): Promise<Uint8Array> {
    return this.#client.bytes(this.#path("/screenshot"), { query: { ...opts } });
  }

  /** The display, its size and DPI, and where the pointer is. */
  state(): Promise<DesktopState> {
    return this.#client.json(desktopStateSchema, this.#path(""));
  }

  /** The screen's size in pixels. */
  async screenSize(): Promise<{ width: number; height: number }> {
    const { width, height } = await this.state();
    return { width, height };
  }

  /** Where the mouse pointer is. */
  async cursor(): Promise<DesktopPoint> {
    return (await this.state()).cursor;
  }

  /** Moves the pointer. */
  moveMouse(x: number, y: number): Promise<DesktopPoint> {
    return this.#mouse({ action: "move", x, y });
  }

  /** Clicks a button (left by default), at (x, y) when given, else where the pointer is. */
  click(opts: { x?: number; y?: number; button?: MouseButton } = {}): Promise<DesktopPoint> {
    return this.#mouse({ action: "click", ...opts });
  }

  /** Double-clicks the left button, at (x, y) when given. */
  doubleClick(opts: { x?: number; y?: number } = {}): Promise<DesktopPoint> {
    return this.#mouse({ action: "double_click", ...opts });
  }

  /** Presses a button and holds it. */
  mouseDown(button: MouseButton = "left"): Promise<DesktopPoint> {
    return this.#mouse({ action: "down", button });
  }

  /** Releases a button. */
  mouseUp(button: MouseButton = "left"): Promise<DesktopPoint> {
    return this.#mouse({ action: "up", button });
  }

  /** Drags with the left button from one point to another. */
  drag(from: { x: number; y: number }, to: { x: number; y: number }): Promise<DesktopPoint> {
    return this.#mouse({ action: "drag", fromX: from.x, fromY: from.y, x: to.x, y: to.y });
  }

  /** Scrolls (down by default) by `amount` steps, at (x, y) when given. */
  scroll(opts: { direction?: ScrollDirection; amount?: number; x?: number; y?: number } = {}): Promise<DesktopPoint> {
    return this.#mouse({ action: "scroll", ...opts });
  }

  /** Types text, any Unicode; `\n` presses Return. */
  type(text: string): Promise<void> {
    return this.#client.empty(this.#path("/keyboard"), { method: "POST", json: { action: "type", text } });
  }

  /** Presses a key combo or several, one after the other (xdotool's names: `ctrl+c`, `Return`, `alt+F4`). */
  press(keys: string | string[]): Promise<void> {
    return this.#client.empty(this.#path("/keyboard"), { method: "POST", json: { action: "press", keys } });
  }

  /** The desktop's windows with their title, class, pid, geometry and whether each has the focus. */
  async windows(): Promise<DesktopWindow[]> {
    return (await this.#client.json(windowsSchema, this.#path("/windows"))).windows;
  }

  /** Raises a window and gives it the keyboard focus. */
  focus(window: number | DesktopWindow): Promise<void> {
    const id = typeof window === "number" ? window : window.id;
    return this.#client.empty(this.#path(`/windows/${id}/focus`), { method: "POST" });
  }

  /**
   * Starts an application by its .desktop name (`xfce4-terminal`, `chromium`), optionally opening a file
   * or URL; `{command}` runs a shell command on the display instead. Resolves with its pid.
   */
  async launch(application: string | { command: string }, uri?: string): Promise<{ pid: number }> {
    const body = typeof application === "string" ? { application } : { command: application.command };
    return this.#client.json(desktopLaunchedSchema, this.#path("/launch"), {
      method: "POST",
      json: { ...body, ...(uri !== undefined ? { uri } : {}) },
    });
  }

  #mouse(body: Record<string, unknown>): Promise<DesktopPoint> {
    return this.#client.json(desktopPointSchema, this.#path("/mouse"), { method: "POST", json: body });
  }

  #path(rest: string): string {
    return `/sandboxes/${encodeURIComponent(this.#sandboxId)}/desktop${rest}`;
  }
}
