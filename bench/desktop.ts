// Desktops: a 1024×768 screenshot's round trip through the API beside the desktop server's own capture +
// encode time (its Server-Timing) and beside `scrot` run via exec in the same sandbox; and how long a click
// takes to show in a screenshot (a click on a dialog's button until the screen differs).
// Alone: npm run bench:desktop (prints its rows, writes bench/results/desktop-<time>.json)
import { execFileSync } from "node:child_process";
import path from "node:path";
import { fileURLToPath } from "node:url";
import { type ConnectionOptions, Sandbox } from "sandpit";
import { repoRoot } from "../tests/helpers/paths.js";
import { startTestServer } from "../tests/helpers/server.js";
import { type BenchRow, fmt, printRows, type Summary, summarize, timeIt, writeBenchResults } from "./stats.js";

const SCREENSHOTS = Number(process.env.BENCH_SCREENSHOTS ?? 50);
const CLICKS = Number(process.env.BENCH_CLICKS ?? 10);

export interface DesktopBenchResults {
  screenshot: Summary;
  serverCapture: Summary;
  serverEncode: Summary;
  scrotExec: Summary;
  clickToChanged: Summary;
  pngBytes: number;
}

/** A screenshot through the API: its PNG and the desktop server's Server-Timing (capture, encode). */
async function screenshot(conn: ConnectionOptions, id: string) {
  const res = await fetch(`${conn.apiUrl}/v1/sandboxes/${id}/desktop/screenshot`, {
    headers: { authorization: `Bearer ${conn.apiKey}` },
  });
  if (res.status !== 200) throw new Error(`screenshot answered ${res.status}: ${await res.text()}`);
  const png = Buffer.from(await res.arrayBuffer());
  const timing = res.headers.get("server-timing") ?? "";
  const dur = (name: string) => Number(new RegExp(`${name};dur=([\\d.]+)`).exec(timing)?.[1] ?? Number.NaN);
  return { png, capture: dur("capture"), encode: dur("encode") };
}

async function waitFor<T>(probe: () => Promise<T | undefined>, what: string): Promise<T> {
  const deadline = Date.now() + 120_000;
  for (;;) {
    const found = await probe();
    if (found !== undefined) return found;
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 50));
  }
}

export async function benchDesktop(
  conn: ConnectionOptions,
  log: (line: string) => void,
): Promise<{ rows: BenchRow[]; results: DesktopBenchResults }> {
  const sandbox = await Sandbox.create({ template: "desktop", timeoutMs: 1_800_000 }, conn);
  try {
    await waitFor(
      () =>
        sandbox.desktop
          .state()
          .then(() => true)
          .catch(() => undefined),
      "the desktop",
    );
    log(`desktop up; ${SCREENSHOTS} screenshots`);
    await screenshot(conn, sandbox.id);
    const rounds: number[] = [];
    const captures: number[] = [];
    const encodes: number[] = [];
    let pngBytes = 0;
    for (let i = 0; i < SCREENSHOTS; i++) {
      const started = performance.now();
      const shot = await screenshot(conn, sandbox.id);
      rounds.push(performance.now() - started);
      captures.push(shot.capture);
      encodes.push(shot.encode);
      pngBytes = shot.png.length;
    }
    const scrot: number[] = [];
    for (let i = 0; i < SCREENSHOTS; i++) {
      scrot.push(
        await timeIt(async () => {
          const r = await sandbox.commands.run("scrot -o /tmp/bench.png");
          if (r.exitCode !== 0) throw new Error(`scrot exited ${r.exitCode}: ${r.stderr}`);
        }),
      );
    }
    log(`${CLICKS} clicks`);
    const clicks: number[] = [];
    for (let i = 0; i < CLICKS; i++) {
      await sandbox.desktop.launch({ command: `xmessage -center -buttons "Close ${i}" "bench ${i}"` });
      const dialog = await waitFor(
        async () => (await sandbox.desktop.windows()).find((w) => w.className === "Xmessage"),
        "the dialog",
      );
      // Drawn: two screenshots in a row agree.
      let before = (await screenshot(conn, sandbox.id)).png;
      await waitFor(async () => {
        const next = (await screenshot(conn, sandbox.id)).png;
        const same = next.equals(before);
        before = next;
        return same ? true : undefined;
      }, "the dialog to settle");
      const started = performance.now();
      await sandbox.desktop.click({ x: dialog.x + 20, y: dialog.y + dialog.height - 12 });
      await waitFor(
        async () => ((await screenshot(conn, sandbox.id)).png.equals(before) ? undefined : true),
        "the screen to change",
      );
      clicks.push(performance.now() - started);
      await waitFor(
        async () => ((await sandbox.desktop.windows()).some((w) => w.id === dialog.id) ? undefined : true),
        "the dialog to close",
      );
    }
    const results: DesktopBenchResults = {
      screenshot: summarize(rounds),
      serverCapture: summarize(captures),
      serverEncode: summarize(encodes),
      scrotExec: summarize(scrot),
      clickToChanged: summarize(clicks),
      pngBytes,
    };
    const rows: BenchRow[] = [
      {
        metric: "desktop screenshot 1024×768 round trip (API)",
        sandpit: fmt(results.screenshot),
        raw: `desktop server capture ${fmt(results.serverCapture)} + encode ${fmt(results.serverEncode)}; scrot via exec ${fmt(results.scrotExec)}`,
        ratio: `${(results.screenshot.p50 / results.scrotExec.p50).toFixed(2)}× scrot`,
        goal: "≤ 100 ms p50",
      },
      {
        metric: "desktop click → screenshot changed",
        sandpit: fmt(results.clickToChanged),
        raw: "—",
        ratio: "—",
        goal: "—",
      },
    ];
    return { rows, results };
  } finally {
    await sandbox.kill();
  }
}

if (process.argv[1] !== undefined && path.resolve(process.argv[1]) === fileURLToPath(import.meta.url)) {
  execFileSync("npm", ["run", "build"], { cwd: repoRoot, stdio: "ignore" });
  const server = await startTestServer();
  try {
    const { rows, results } = await benchDesktop({ apiUrl: server.url, apiKey: server.apiKey }, (line) =>
      process.stderr.write(`[bench] ${line}\n`),
    );
    printRows(rows);
    await writeBenchResults("desktop", { rows, results });
  } finally {
    await server.close();
  }
}
