import type { CodeEvent } from "@sandpit/contract";
import { formatDuration } from "./format";

/**
 * How the console shows one rich result: the first form of its MIME bundle that it can show, in Jupyter's
 * order of preference. HTML from a sandbox is only ever shown inside a sandboxed iframe (no scripts, no
 * access to the console's origin), images only as `data:` URLs of an <img>: nothing from a sandbox becomes
 * markup of the console's own page.
 */
export type ResultView =
  | { kind: "image"; src: string; mime: string }
  | { kind: "html"; html: string }
  | { kind: "text"; text: string; mime: string };

const BASE64_IMAGES = ["image/png", "image/jpeg", "image/gif", "image/webp"];
const TEXT_FORMS = ["text/markdown", "text/latex", "text/plain"];

export function resultView(data: Record<string, unknown>): ResultView | undefined {
  for (const mime of BASE64_IMAGES) {
    const content = data[mime];
    if (typeof content === "string") return { kind: "image", src: `data:${mime};base64,${content.trim()}`, mime };
  }
  const svg = data["image/svg+xml"];
  if (typeof svg === "string") {
    // An SVG in an <img> runs no scripts and loads nothing.
    return { kind: "image", src: `data:image/svg+xml;charset=utf-8,${encodeURIComponent(svg)}`, mime: "image/svg+xml" };
  }
  const html = data["text/html"];
  if (typeof html === "string") return { kind: "html", html };
  if (data["application/json"] !== undefined) {
    return { kind: "text", text: JSON.stringify(data["application/json"], null, 2), mime: "application/json" };
  }
  for (const mime of TEXT_FORMS) {
    const content = data[mime];
    if (typeof content === "string") return { kind: "text", text: content, mime };
  }
  return undefined;
}

/** What a cell showed so far, in order: consecutive output of one stream joined into one block. */
export type OutputBlock =
  | { kind: "stdout" | "stderr"; text: string }
  | { kind: "result"; isMainResult: boolean; view: ResultView | undefined }
  | { kind: "error"; name: string; value: string; traceback: string };

/** Adds one event of a running cell to its blocks (`end` adds none: the caller keeps the status). */
export function addEvent(blocks: OutputBlock[], event: CodeEvent): OutputBlock[] {
  switch (event.type) {
    case "stdout":
    case "stderr": {
      const last = blocks.at(-1);
      if (last?.kind === event.type)
        return [...blocks.slice(0, -1), { kind: event.type, text: last.text + event.text }];
      return [...blocks, { kind: event.type, text: event.text }];
    }
    case "result":
      return [...blocks, { kind: "result", isMainResult: event.isMainResult, view: resultView(event.data) }];
    case "error":
      return [...blocks, { kind: "error", name: event.name, value: event.value, traceback: event.traceback }];
    case "end":
      return blocks;
  }
}

/**
 * Splits a response body of newline-delimited JSON into parsed values as the bytes arrive (a line may be
 * split anywhere across chunks).
 */
export async function* ndjsonValues(body: ReadableStream<Uint8Array>): AsyncGenerator<unknown, void, undefined> {
  const reader = body.getReader();
  const decoder = new TextDecoder();
  let buffered = "";
  try {
    for (;;) {
      const { done, value } = await reader.read();
      if (done) break;
      buffered += decoder.decode(value, { stream: true });
      const lines = buffered.split("\n");
      buffered = lines.pop() ?? "";
      for (const line of lines) if (line.trim() !== "") yield JSON.parse(line);
    }
    buffered += decoder.decode();
    if (buffered.trim() !== "") yield JSON.parse(buffered);
  } finally {
    reader.releaseLock();
  }
}

/** A cell's run time: milliseconds below a second (most cells), else as other durations. */
export function cellDuration(ms: number): string {
  return ms < 1000 ? `${Math.round(ms)} ms` : formatDuration(ms);
}
