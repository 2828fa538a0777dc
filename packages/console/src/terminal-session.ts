import { FitAddon } from "@xterm/addon-fit";
import { Terminal } from "@xterm/xterm";
import "@xterm/xterm/css/xterm.css";
import type { TerminalServerMessage } from "@sandpit/contract";
import type { ConsoleApi } from "./api";

export type SessionStatus =
  | { state: "connecting" }
  | { state: "connected"; terminalId: string }
  | { state: "exited"; terminalId: string; exitCode: number }
  | { state: "closed"; terminalId: string; reason: string };

/**
 * A terminal of the sandbox in the page: xterm.js wired to the terminal's WebSocket. Keystrokes go out
 * as binary frames, output comes in as binary frames, size changes as `{type: "resize"}`; the server
 * replays the output a reconnecting client missed.
 */
export class TerminalSession {
  private readonly term: Terminal;
  private readonly fit = new FitAddon();
  private readonly resizeObserver: ResizeObserver;
  private socket: WebSocket | undefined;
  private disposed = false;

  constructor(
    private readonly api: ConsoleApi,
    private readonly sandboxId: string,
    element: HTMLElement,
    private readonly onStatus: (status: SessionStatus) => void,
  ) {
    this.term = new Terminal({
      cursorBlink: true,
      fontFamily: 'ui-monospace, "DejaVu Sans Mono", Menlo, Consolas, monospace',
      fontSize: 13,
      scrollback: 5000,
      theme: { background: "#10151c", foreground: "#d8dee9", cursor: "#8fbcbb" },
    });
    this.term.loadAddon(this.fit);
    this.term.open(element);
    this.fit.fit();
    this.resizeObserver = new ResizeObserver(() => {
      if (!this.disposed) this.fit.fit();
    });
    this.resizeObserver.observe(element);
  }

  /** Connects to `terminalId`, or to a new terminal (a login shell) sized to the element. */
  async connect(terminalId?: string): Promise<void> {
    this.onStatus({ state: "connecting" });
    const id = terminalId ?? (await this.api.createTerminal(this.sandboxId, this.size())).terminalId;
    if (this.disposed) return;
    const socket = new WebSocket(this.api.terminalSocketUrl(this.sandboxId, id));
    socket.binaryType = "arraybuffer";
    this.socket = socket;
    const encoder = new TextEncoder();
    const input = this.term.onData((data) => {
      if (socket.readyState === WebSocket.OPEN) socket.send(encoder.encode(data));
    });
    const resize = this.term.onResize(({ cols, rows }) => {
      if (socket.readyState === WebSocket.OPEN) socket.send(JSON.stringify({ type: "resize", cols, rows }));
    });
    let exitCode: number | undefined;
    socket.onopen = () => {
      // The terminal may have been made for another size (or another window): match this one.
      socket.send(JSON.stringify({ type: "resize", ...this.size() }));
      this.onStatus({ state: "connected", terminalId: id });
      this.term.focus();
    };
    socket.onmessage = (message: MessageEvent<ArrayBuffer | string>) => {
      if (typeof message.data !== "string") {
        this.term.write(new Uint8Array(message.data));
        return;
      }
      const control = JSON.parse(message.data) as TerminalServerMessage;
      if (control.type === "exit") {
        exitCode = control.exitCode;
        this.term.write(`\r\n\x1b[2m[exited with code ${control.exitCode}]\x1b[0m\r\n`);
      } else {
        this.term.write(`\r\n\x1b[31m[${control.code}: ${control.message}]\x1b[0m\r\n`);
      }
    };
    socket.onclose = (event) => {
      input.dispose();
      resize.dispose();
      if (this.disposed) return;
      if (exitCode !== undefined) this.onStatus({ state: "exited", terminalId: id, exitCode });
      else
        this.onStatus({
          state: "closed",
          terminalId: id,
          reason: event.reason || (event.code === 1006 ? "connection lost" : `closed (${event.code})`),
        });
    };
  }

  private size(): { cols: number; rows: number } {
    const proposed = this.fit.proposeDimensions();
    return {
      cols: Math.max(2, proposed?.cols ?? this.term.cols),
      rows: Math.max(1, proposed?.rows ?? this.term.rows),
    };
  }

  /** Leaves the page: the socket closes, the program keeps running (reconnect within the server's grace time). */
  dispose(): void {
    this.disposed = true;
    this.socket?.close(1000);
    this.resizeObserver.disconnect();
    this.term.dispose();
  }
}
