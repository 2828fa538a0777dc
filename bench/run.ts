// Sandpit benchmarks, each figure beside bare runsc measured in the same run on the same template.
// Usage: npm run bench  (prints a table, writes bench/results/<timestamp>.json)
import { execFileSync } from "node:child_process";
import { randomBytes } from "node:crypto";
import { mkdir, rm, writeFile } from "node:fs/promises";
import os from "node:os";
import path from "node:path";
import { Sandbox } from "sandpit";
import { repoRoot } from "../tests/helpers/paths.js";
import { startTestServer } from "../tests/helpers/server.js";
import { benchCode } from "./code.js";
import { benchCreate } from "./create.js";
import { benchDesktop } from "./desktop.js";
import { measureSpawnFloors } from "./floor.js";
import { baseTemplateRootfs, RawRunsc } from "./raw-runsc.js";
import { ROOMY } from "./server-env.js";
import { type BenchRow, fmt, hostMemoryUsed, ms, printRows, summarize, timeIt } from "./stats.js";

const N_CREATE = Number(process.env.BENCH_CREATES ?? 8);
const N_EXEC = Number(process.env.BENCH_EXECS ?? 100);
const N_IDLE = Number(process.env.BENCH_IDLE ?? 50);
const UPLOAD_MB = 100;
const FILE_ROUNDS = Number(process.env.BENCH_FILE_ROUNDS ?? 3);

const rows: BenchRow[] = [];
const results: Record<string, unknown> = {};

function log(line: string) {
  process.stderr.write(`[bench] ${line}\n`);
}

async function main() {
  execFileSync("npm", ["run", "build"], { cwd: repoRoot, stdio: "ignore" });
  const ADMIN_KEY = "bench-admin-key";
  const server = await startTestServer({
    ...ROOMY,
    SANDPIT_ADMIN_KEY: ADMIN_KEY,
    SANDPIT_WARM_POOLS: JSON.stringify([
      { id: "bench", template: "base", size: 2, vcpus: 1, memoryMb: 512, diskMb: 2048 },
    ]),
  });
  const conn = { apiUrl: server.url, apiKey: server.apiKey };
  const raw = await RawRunsc.create(await baseTemplateRootfs());
  const rawId = (i: number) => `benchraw${String(i).padStart(12, "0")}`;
  try {
    // --- create → first exec done, with the phases of Sandpit's create
    const create = await benchCreate(server, raw, { creates: N_CREATE, log });
    rows.push(create.row);
    results.create = create.results;
    const createSp = create.results.sandpit;

    // --- exec `true` round trip, and the spawn floor inside the sandbox
    log("exec round trip");
    const sandbox = await Sandbox.create({}, conn);
    for (let i = 0; i < 5; i++) await sandbox.commands.run("true");
    // The floor swings with the host's load: it is measured in rounds between the exec rounds, so that
    // both see the same conditions, and compared over all samples.
    const spExec: number[] = [];
    const floor: number[] = [];
    const idleFloor: number[] = [];
    const rounds = 5;
    for (let r = 0; r < rounds; r++) {
      for (let i = 0; i < N_EXEC / rounds; i++) {
        spExec.push(await timeIt(() => sandbox.commands.run(["/bin/true"])));
      }
      await measureSpawnFloors(sandbox, floor, idleFloor);
    }
    const { p50: floorP50, p95: floorP95 } = summarize(floor);
    const { p50: idleFloorP50, p95: idleFloorP95 } = summarize(idleFloor);
    await raw.start(rawId(100));
    const rawExec: number[] = [];
    for (let i = 0; i < 30; i++) rawExec.push(await timeIt(() => raw.exec(rawId(100), "/bin/true")));
    await raw.destroy(rawId(100));
    const execSp = summarize(spExec);
    const execRaw = summarize(rawExec);
    rows.push({
      metric: "exec `true` round trip",
      sandpit: fmt(execSp),
      raw: `runsc exec ${fmt(execRaw)}; in-sandbox spawn p50 ${ms(floorP50)} (after 5 ms idle ${ms(idleFloorP50)})`,
      ratio: `${(execSp.p50 / floorP50).toFixed(2)}× floor (${(execSp.p50 / idleFloorP50).toFixed(2)}× idle floor), ${(execRaw.p50 / execSp.p50).toFixed(1)}× faster than runsc exec`,
      goal: "p50 ≤ 1.3× floor",
    });
    results.exec = {
      sandpit: execSp,
      runscExec: execRaw,
      spawnFloor: { p50: floorP50, p95: floorP95 },
      spawnFloorAfterIdle: { p50: idleFloorP50, p95: idleFloorP95 },
    };

    // --- code contexts: a cell's round trip beside execs, and create → first result
    log("code contexts");
    const code = await benchCode(conn, { execs: N_EXEC, log });
    rows.push(...code.rows);
    results.code = code.results;

    // --- desktops: a screenshot's round trip and a click until the screen shows it
    log("desktop");
    const desktop = await benchDesktop(conn, log);
    rows.push(...desktop.rows);
    results.desktop = desktop.results;

    // --- upload and download of 100 MB
    log("upload/download");
    const data = randomBytes(UPLOAD_MB * 1024 * 1024);
    const hostFile = "/var/tmp/sandpit-bench-upload.bin";
    await writeFile(hostFile, data);
    const sandboxRoot = path.join(server.dataDir, "sandboxes", sandbox.id, "rootfs", "root");
    // Rounds of Sandpit and raw alternating; each figure is the median of its rounds.
    const ups: number[] = [];
    const downs: number[] = [];
    const rawUps: number[] = [];
    const rawDowns: number[] = [];
    for (let r = 0; r < FILE_ROUNDS; r++) {
      ups.push(await timeIt(() => sandbox.files.write("/root/upload.bin", data)));
      downs.push(
        await timeIt(async () => {
          const bytes = (await sandbox.files.read("/root/upload.bin", { format: "bytes" })) as Uint8Array;
          if (bytes.length !== data.length) throw new Error("download size mismatch");
        }),
      );
      rawUps.push(await timeIt(async () => execFileSync("cp", [hostFile, path.join(sandboxRoot, "raw.bin")])));
      rawDowns.push(
        await timeIt(async () => execFileSync("cp", [path.join(sandboxRoot, "raw.bin"), `${hostFile}.back`])),
      );
    }
    await rm(hostFile, { force: true });
    await rm(`${hostFile}.back`, { force: true });
    const [up, down, rawUp, rawDown] = [ups, downs, rawUps, rawDowns].map((t) => summarize(t).p50) as [
      number,
      number,
      number,
      number,
    ];
    const mbps = (t: number) => UPLOAD_MB / (t / 1000);
    rows.push({
      metric: `upload ${UPLOAD_MB} MB`,
      sandpit: `${mbps(up).toFixed(0)} MB/s`,
      raw: `${mbps(rawUp).toFixed(0)} MB/s (cp into the sandbox root)`,
      ratio: `${(mbps(up) / mbps(rawUp)).toFixed(2)}×`,
      goal: "≥ 0.5× raw",
    });
    rows.push({
      metric: `download ${UPLOAD_MB} MB`,
      sandpit: `${mbps(down).toFixed(0)} MB/s`,
      raw: `${mbps(rawDown).toFixed(0)} MB/s (cp out of the sandbox root)`,
      ratio: `${(mbps(down) / mbps(rawDown)).toFixed(2)}×`,
      goal: "≥ 0.5× raw",
    });
    results.files = {
      uploadMBps: mbps(up),
      downloadMBps: mbps(down),
      rawUploadMBps: mbps(rawUp),
      rawDownloadMBps: mbps(rawDown),
    };
    await sandbox.kill();

    // --- pause and resume: idle, and holding 500 MB
    log("pause/resume");
    /** Pauses and resumes `rounds` times, resuming `resumeAfterMs` after each pause (agents often do at once). */
    const pauseResume = async (sb: Sandbox, rounds: number, resumeAfterMs: number) => {
      const pauses: number[] = [];
      const resumes: number[] = [];
      for (let i = 0; i < rounds; i++) {
        pauses.push(await timeIt(() => sb.pause()));
        await new Promise((res) => setTimeout(res, resumeAfterMs));
        resumes.push(await timeIt(() => sb.resume()));
      }
      return { pause: summarize(pauses), resume: summarize(resumes) };
    };
    const idleSb = await Sandbox.create({}, conn);
    const idleAtOnce = await pauseResume(idleSb, 5, 0);
    const idleAfter100 = await pauseResume(idleSb, 5, 100);
    const idlePR = await pauseResume(idleSb, 5, 2500);
    await idleSb.kill();
    const bigSb = await Sandbox.create({ resources: { memoryMb: 1024 } }, conn);
    await bigSb.commands.run(
      'python3 -c \'import os,time\nb=os.urandom(500*1024*1024)\nopen("/tmp/ready","w").close()\nwhile True: time.sleep(60)\'',
      { background: true },
    );
    for (let i = 0; i < 100; i++) {
      const r = await bigSb.commands.run("test -e /tmp/ready && echo y || echo n");
      if ("stdout" in r && r.stdout.trim() === "y") break;
      await new Promise((res) => setTimeout(res, 300));
    }
    const bigPR = await pauseResume(bigSb, 2, 2500);
    await bigSb.kill();
    await raw.start(rawId(300));
    const rawPauses: number[] = [];
    const rawResumes: number[] = [];
    for (let i = 0; i < 5; i++) {
      rawPauses.push(await timeIt(() => raw.checkpoint(rawId(300))));
      await raw.removeCheckpointed(rawId(300));
      rawResumes.push(await timeIt(() => raw.restore(rawId(300))));
    }
    await raw.destroy(rawId(300));
    const rawPR = { pause: summarize(rawPauses), resume: summarize(rawResumes) };
    rows.push({
      metric: "pause / resume, idle",
      sandpit: `${ms(idlePR.pause.p50)} / ${ms(idlePR.resume.p50)} (p50)`,
      raw: `checkpoint ${ms(rawPR.pause.p50)} / restore ${ms(rawPR.resume.p50)}`,
      ratio: `${(idlePR.resume.p50 / rawPR.resume.p50).toFixed(2)}× (resume)`,
      goal: "resume p50 ≤ 300 ms",
    });
    rows.push({
      metric: "resume right after a pause, idle (0 / 100 ms later)",
      sandpit: `${ms(idleAtOnce.resume.p50)} / ${ms(idleAfter100.resume.p50)} (p50)`,
      raw: `restore ${ms(rawPR.resume.p50)}`,
      ratio: `${(idleAtOnce.resume.p50 / rawPR.resume.p50).toFixed(2)}× (at once)`,
      goal: "resume p50 ≤ 300 ms",
    });
    rows.push({
      metric: "pause / resume, 500 MB in memory",
      sandpit: `${ms(bigPR.pause.p50)} / ${ms(bigPR.resume.p50)} (p50)`,
      raw: "—",
      ratio: "—",
      goal: "—",
    });
    results.pauseResume = {
      idle: idlePR,
      idleResumedAtOnce: idleAtOnce,
      idleResumedAfter100ms: idleAfter100,
      holding500MB: bigPR,
      raw: rawPR,
    };

    // --- warm-pool create
    log("warm-pool create");
    const warm: number[] = [];
    const warmHits: boolean[] = [];
    for (let i = 0; i < 6; i++) {
      await new Promise((res) => setTimeout(res, 2500));
      let id = "";
      warm.push(
        await timeIt(async () => {
          const res = await fetch(`${server.url}/v1/sandboxes`, {
            method: "POST",
            headers: { authorization: `Bearer ${server.apiKey}`, "content-type": "application/json" },
            body: JSON.stringify({ resources: { vcpus: 1, memoryMb: 512, diskMb: 2048 }, env: { N: String(i) } }),
          });
          const body = (await res.json()) as { id: string; warmPoolCheckout?: { hit: boolean } };
          id = body.id;
          warmHits.push(body.warmPoolCheckout?.hit === true);
        }),
      );
      await fetch(`${server.url}/v1/sandboxes/${id}`, {
        method: "DELETE",
        headers: { authorization: `Bearer ${server.apiKey}` },
      });
    }
    const warmS = summarize(warm);
    rows.push({
      metric: "warm-pool create",
      sandpit: `${fmt(warmS)} (${warmHits.filter(Boolean).length}/${warmHits.length} hits)`,
      raw: `cold create p50 ${ms(createSp.p50)}`,
      ratio: `${(warmS.p50 / createSp.p50).toFixed(2)}× cold`,
      goal: "p50 ≤ 20 ms",
    });
    results.warmPool = { create: warmS, hits: warmHits };
    await fetch(`${server.url}/v1/admin/warm-pools/bench`, {
      method: "DELETE",
      headers: { authorization: `Bearer ${ADMIN_KEY}` },
    });

    // --- 20 concurrent creates
    log("20 concurrent creates");
    let created: PromiseSettledResult<Sandbox>[] = [];
    const concurrent = await timeIt(async () => {
      created = await Promise.allSettled(Array.from({ length: 20 }, () => Sandbox.create({}, conn)));
    });
    const failures = created.filter((c) => c.status === "rejected");
    for (const f of failures) log(`create failed: ${String((f as PromiseRejectedResult).reason)}`);
    await Promise.all(created.map((c) => (c.status === "fulfilled" ? c.value.kill() : undefined)));
    rows.push({
      metric: "20 concurrent creates",
      sandpit: `${(concurrent / 1000).toFixed(1)} s total, ${failures.length} failures`,
      raw: "—",
      ratio: "—",
      goal: "0 failures",
    });
    results.concurrentCreates = { totalMs: concurrent, failures: failures.length };

    // --- idle memory per sandbox
    log(`${N_IDLE} idle sandboxes`);
    const settle = () => new Promise((r) => setTimeout(r, 5000));
    await settle();
    const spBefore = await hostMemoryUsed();
    const idle: Sandbox[] = [];
    for (let i = 0; i < N_IDLE; i += 10) {
      idle.push(
        ...(await Promise.all(Array.from({ length: Math.min(10, N_IDLE - i) }, () => Sandbox.create({}, conn)))),
      );
    }
    await settle();
    const spPer = ((await hostMemoryUsed()) - spBefore) / N_IDLE;
    await Promise.all(idle.map((s) => s.kill()));
    await settle();
    const rawBefore = await hostMemoryUsed();
    for (let i = 0; i < N_IDLE; i++) await raw.start(rawId(200 + i));
    await settle();
    const rawPer = ((await hostMemoryUsed()) - rawBefore) / N_IDLE;
    for (let i = 0; i < N_IDLE; i++) await raw.destroy(rawId(200 + i));
    const mb = (b: number) => `${(b / 1024 / 1024).toFixed(1)} MB`;
    rows.push({
      metric: `host memory per idle sandbox (${N_IDLE})`,
      sandpit: mb(spPer),
      raw: mb(rawPer),
      ratio: `${(spPer / rawPer).toFixed(2)}×`,
      goal: "≤ 20 MB",
    });
    results.idleMemory = { sandpitBytes: spPer, rawBytes: rawPer, count: N_IDLE };
  } finally {
    await raw.close();
    await server.close();
  }

  printRows(rows);

  const dir = path.join(repoRoot, "bench", "results");
  await mkdir(dir, { recursive: true });
  const file = path.join(dir, `${new Date().toISOString().replace(/[:.]/g, "-")}.json`);
  const machine = {
    cpus: os.cpus().length,
    cpuModel: os.cpus()[0]?.model,
    memoryBytes: os.totalmem(),
    kernel: os.release(),
  };
  await writeFile(file, JSON.stringify({ date: new Date().toISOString(), machine, rows, results }, null, 2));
  console.log(`\nwritten to ${path.relative(repoRoot, file)}`);
}

await main();
