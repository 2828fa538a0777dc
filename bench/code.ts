// Code contexts: a cell's round trip through the API beside execs in the same sandbox and run, and how long a
// code-interpreter sandbox takes from create to its first result beside base's create → first exec.
// Part of `npm run bench`; alone: npm run bench:code (prints its rows, writes bench/results/code-<time>.json)
import { execFileSync } from "node:child_process";
import path from "node:path";
import { fileURLToPath } from "node:url";
import { type ConnectionOptions, Sandbox } from "sandpit";
import { repoRoot } from "../tests/helpers/paths.js";
import { startTestServer } from "../tests/helpers/server.js";
import { type BenchRow, fmt, ms, printRows, type Summary, summarize, timeIt, writeBenchResults } from "./stats.js";

const TEMPLATE = "code-interpreter";

export interface CodeBenchResults {
  runCode: Summary;
  execTrue: Summary;
  execPython: Summary;
  /** The first cell of a sandbox: it starts the code server and the Python kernel. */
  firstRunCodeMs: number;
  createToFirstResult: Summary;
  createToFirstExecCodeInterpreter: Summary;
  createToFirstExecBase: Summary;
}

/** Runs a cell and fails unless it gave 2: a benchmark of a failing cell would measure the wrong thing. */
async function runOnePlusOne(sandbox: Sandbox): Promise<void> {
  const execution = await sandbox.code.run("1+1");
  if (execution.results[0]?.data["text/plain"] !== "2") {
    throw new Error(`runCode("1+1") gave ${JSON.stringify(execution)}`);
  }
}

async function exec(sandbox: Sandbox, argv: string[]): Promise<void> {
  const result = await sandbox.commands.run(argv);
  if (result.exitCode !== 0) throw new Error(`${argv.join(" ")} exited ${result.exitCode}: ${result.stderr}`);
}

export async function benchCode(
  conn: ConnectionOptions,
  opts: { execs: number; creates?: number; log: (line: string) => void },
): Promise<{ rows: BenchRow[]; results: CodeBenchResults }> {
  const creates = opts.creates ?? Number(process.env.BENCH_CODE_CREATES ?? 3);

  // create → first result, the code-interpreter template beside base, rounds alternating so both see the
  // same conditions; a code-interpreter create → first exec too, to tell the template from the code server.
  opts.log(`code: create → first result (${creates} rounds)`);
  const firstResult: number[] = [];
  const firstExecCi: number[] = [];
  const firstExecBase: number[] = [];
  for (let i = 0; i < creates; i++) {
    for (const [samples, template, first] of [
      [firstResult, TEMPLATE, (s: Sandbox) => runOnePlusOne(s)],
      [firstExecCi, TEMPLATE, (s: Sandbox) => exec(s, ["true"])],
      [firstExecBase, "base", (s: Sandbox) => exec(s, ["true"])],
    ] as const) {
      let sandbox: Sandbox | undefined;
      samples.push(
        await timeIt(async () => {
          sandbox = await Sandbox.create({ template }, conn);
          await first(sandbox);
        }),
      );
      await sandbox?.kill();
    }
  }

  opts.log(`code: runCode("1+1") beside exec, ${opts.execs} of each`);
  const sandbox = await Sandbox.create({ template: TEMPLATE, timeoutMs: 30 * 60_000 }, conn);
  try {
    await exec(sandbox, ["true"]);
    const firstRunCodeMs = await timeIt(() => runOnePlusOne(sandbox));
    for (let i = 0; i < 10; i++) {
      await runOnePlusOne(sandbox);
      await exec(sandbox, ["python3", "-c", "1+1"]);
      await exec(sandbox, ["true"]);
    }
    // Interleaved one by one: the three see the same load on the host.
    const runCode: number[] = [];
    const execTrue: number[] = [];
    const execPython: number[] = [];
    for (let i = 0; i < opts.execs; i++) {
      runCode.push(await timeIt(() => runOnePlusOne(sandbox)));
      execPython.push(await timeIt(() => exec(sandbox, ["python3", "-c", "1+1"])));
      execTrue.push(await timeIt(() => exec(sandbox, ["true"])));
    }
    const results: CodeBenchResults = {
      runCode: summarize(runCode),
      execTrue: summarize(execTrue),
      execPython: summarize(execPython),
      firstRunCodeMs,
      createToFirstResult: summarize(firstResult),
      createToFirstExecCodeInterpreter: summarize(firstExecCi),
      createToFirstExecBase: summarize(firstExecBase),
    };
    const r = results;
    const rows: BenchRow[] = [
      {
        metric: 'runCode("1+1") round trip',
        sandpit: fmt(r.runCode),
        raw: `same sandbox: exec \`true\` ${fmt(r.execTrue)}; exec \`python3 -c "1+1"\` ${fmt(r.execPython)}`,
        ratio: `${(r.runCode.p50 / r.execTrue.p50).toFixed(2)}× exec true, ${(r.execPython.p50 / r.runCode.p50).toFixed(1)}× faster than python3 -c`,
        goal: "p50 ≤ 1.0× exec true, ≥ 5× faster than python3 -c",
      },
      {
        metric: "runCode first call (starts code server + kernel)",
        sandpit: ms(r.firstRunCodeMs),
        raw: "—",
        ratio: `${(r.firstRunCodeMs / r.runCode.p50).toFixed(0)}× a later call`,
        goal: "—",
      },
      {
        metric: "create → first result, code-interpreter",
        sandpit: fmt(r.createToFirstResult),
        raw: `base create → first exec ${fmt(r.createToFirstExecBase)}; code-interpreter create → first exec ${fmt(r.createToFirstExecCodeInterpreter)}`,
        ratio: `${(r.createToFirstResult.p50 / r.createToFirstExecBase.p50).toFixed(2)}× base`,
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
    const { rows, results } = await benchCode(
      { apiUrl: server.url, apiKey: server.apiKey },
      { execs: Number(process.env.BENCH_EXECS ?? 100), log: (line) => process.stderr.write(`[bench] ${line}\n`) },
    );
    printRows(rows);
    await writeBenchResults("code", { rows, results });
  } finally {
    await server.close();
  }
}
