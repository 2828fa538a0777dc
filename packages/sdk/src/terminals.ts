import {
  type CreateTerminalRequest,
  listTerminalsResponseSchema,
  type Terminal as TerminalInfo,
  terminalSchema,
  terminalServerMessageSchema,
} from "@sandpit/contract";
import WebSocket from "ws";
import type { ApiClient } from "./api-client.js";
import { SandpitError } from "./errors.js";

export type { TerminalInfo };

/** Options of {@link Terminals.create}. */
export interface TerminalOptions extends CreateTerminalRequest {
  /** Called with the terminal's output as it arrives (raw bytes: text with escape sequences). */
  onData?: (data: Uint8Array) => void;
}

/**
 * An interactive program on a terminal in the sandbox, connected over a WebSocket. Send keystrokes with
 * {@link Terminal.write}; output arrives through `onData`.
 */
export class Terminal {
  readonly #socket: WebSocket;
  readonly #exit: Promise<number>;
  readonly #client: ApiClient;
  readonly #path: string;

  /** @internal Use {@link Terminals.create} or {@link Terminals.connect}. */
  constructor(
    readonly info: TerminalInfo,
    socket: WebSocket,
    exit: Promise<number>,
    client: ApiClient,
    path: string,
  ) {
    this.#socket = socket;
    this.#exit = exit;
    this.#client = client;
    this.#path = path;
  }

  get id(): string {
    return this.info.terminalId;
  }

  /** Sends input as typed: text (UTF-8) or bytes; `"\x03"` is Ctrl-C. */
  write(data: string | Uint8Array): void {
    this.#socket.send(typeof data === "string" ? Buffer.from(data) : data, { binary: true });
  }

  /** Changes the terminal's size; the program gets SIGWINCH. */
  resize(cols: number, rows: number): void {
    this.#socket.send(JSON.stringify({ type: "resize", cols, rows }));
  }

  /** Resolves with the program's exit code once it ends. */
  wait(): Promise<number> {
    return this.#exit;
  }

  /** Disconnects without ending the program (connect again with {@link Terminals.connect}). */
  disconnect(): void {
    this.#socket.close(1000);
  }

  /** Ends the program. */
  async kill(): Promise<void> {
    await this.#client.empty(this.#path, { method: "DELETE" });
  }
}

/**
 * Terminals in a sandbox: a shell (or any program) on a pseudo-terminal, as `docker exec -it` gives.
 *
 * @example
 * ```ts
 * const term = await sandbox.terminals.create({ cols: 120, rows: 40, onData: (d) => process.stdout.write(d) });
 * term.write("ls -la\r");
 * term.write("exit\r");
 * console.log("exit code", await term.wait());
 * ```
 */
export class Terminals {
  readonly #sandboxId: string;
  readonly #client: ApiClient;

  /** @internal Reached as `sandbox.terminals`. */
  constructor(sandboxId: string, client: ApiClient) {
    this.#sandboxId = sandboxId;
    this.#client = client;
  }

  /** Starts a program (default: a login shell) on a new terminal and connects to it. */
  async create(opts: TerminalOptions = {}): Promise<Terminal> {
    const { onData, ...request } = opts;
    const info = await this.#client.json(terminalSchema, this.#terminalsPath(), {
      method: "POST",
      json: request,
    });
    return this.#connect(info, onData);
  }

  /** Connects to a running terminal; output it produced while nobody was connected arrives first. */
  async connect(terminalId: string, opts: Pick<TerminalOptions, "onData"> = {}): Promise<Terminal> {
    return this.#connect(await this.get(terminalId), opts.onData);
  }

  /** The sandbox's terminals, connected or not. */
  async list(): Promise<TerminalInfo[]> {
    const { terminals } = await this.#client.json(listTerminalsResponseSchema, this.#terminalsPath());
    return terminals;
  }

  /** What the API says about one terminal, without connecting to it. */
  async get(terminalId: string): Promise<TerminalInfo> {
    return this.#client.json(terminalSchema, this.#terminalPath(terminalId));
  }

  /**
   * Sends input to a terminal over HTTP, as typed, without holding its WebSocket (for scripts that
   * drive a terminal someone else watches).
   *
   * @example
   * ```ts
   * await sandbox.terminals.sendInput(terminalId, "make test\r");
   * ```
   */
  async sendInput(terminalId: string, data: string | Uint8Array): Promise<void> {
    const json = typeof data === "string" ? { data } : { dataBase64: Buffer.from(data).toString("base64") };
    await this.#client.empty(`${this.#terminalPath(terminalId)}/input`, { method: "POST", json });
  }

  /** Resizes a terminal over HTTP; its program gets SIGWINCH. */
  async resize(terminalId: string, cols: number, rows: number): Promise<void> {
    await this.#client.empty(`${this.#terminalPath(terminalId)}/resize`, { method: "POST", json: { cols, rows } });
  }

  /** Ends a terminal's program. */
  async kill(terminalId: string): Promise<void> {
    await this.#client.empty(this.#terminalPath(terminalId), { method: "DELETE" });
  }

  #terminalsPath(): string {
    return `/sandboxes/${encodeURIComponent(this.#sandboxId)}/terminals`;
  }

  #terminalPath(terminalId: string): string {
    return `${this.#terminalsPath()}/${encodeURIComponent(terminalId)}`;
  }

  async #connect(info: TerminalInfo, onData: ((data: Uint8Array) => void) | undefined): Promise<Terminal> {
    const path = this.#terminalPath(info.terminalId);
    const url = `${this.#client.config.apiUrl.replace(/^http/, "ws")}/v1${path}`;
    const headers: Record<string, string> = {};
    if (this.#client.config.apiKey) headers.authorization = `Bearer ${this.#client.config.apiKey}`;
    // Without it, a proxy that never answers the upgrade would leave the caller waiting forever.
    const timeoutMs = this.#client.config.timeoutMs;
    const socket = new WebSocket(url, { headers, ...(timeoutMs > 0 ? { handshakeTimeout: timeoutMs } : {}) });
    let exitCode: number | undefined;
    const exit = new Promise<number>((resolve, reject) => {
      socket.on("message", (data: Buffer, isBinary: boolean) => {
        if (isBinary) {
          onData?.(new Uint8Array(data));
          return;
        }
        const message = terminalServerMessageSchema.safeParse(JSON.parse(data.toString("utf8")));
        if (message.success && message.data.type === "exit") exitCode = message.data.exitCode;
      });
      socket.on("close", (code, reason) => {
        if (exitCode !== undefined) resolve(exitCode);
        else if (code !== 1000)
          reject(new SandpitError(`terminal closed: ${code} ${reason.toString()}`, { code: "terminal_closed" }));
      });
    });
    exit.catch(() => undefined);
    await new Promise<void>((resolve, reject) => {
      socket.once("open", () => resolve());
      socket.once("unexpected-response", (_req, res) =>
        reject(new SandpitError(`terminal connection refused: HTTP ${res.statusCode}`, { code: "terminal_refused" })),
      );
      socket.once("error", (e) =>
        reject(new SandpitError(`terminal connection failed: ${e.message}`, { code: "network_error" })),
      );
    });
    return new Terminal(info, socket, exit, this.#client, path);
  }
}
