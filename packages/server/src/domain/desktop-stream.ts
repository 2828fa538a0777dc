/** A live view of a sandbox's desktop: the processes that serve it and the token that opens it. */
export interface DesktopStreamRecord {
  id: string;
  sandboxId: string;
  viewOnly: boolean;
  /** Opens the sandbox's stream port through the port proxy while the stream is live. */
  token: string;
  /** The background command (x11vnc + websockify) that serves the stream inside the sandbox. */
  commandId: string;
  startedAt: number;
  /** When it was stopped or replaced; a stopped stream's token opens nothing. */
  stoppedAt: number | null;
}
