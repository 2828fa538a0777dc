// Image pull + first create for a ~100 MB image from a loopback registry, then create time from the
// cached image against the `base` template, in the same run. Usage: npm run bench:images
import { execFileSync } from "node:child_process";
import { mkdir, mkdtemp, rm, writeFile } from "node:fs/promises";
import path from "node:path";
import { apiClient } from "../tests/helpers/api.js";
import { repoRoot } from "../tests/helpers/paths.js";
import { busyboxLayer, layerTree, pushImage, startRegistry } from "../tests/helpers/registry.js";
import { startTestServer } from "../tests/helpers/server.js";
import { summarize, timeIt } from "./stats.js";

const N = Number(process.env.BENCH_IMAGE_CREATES ?? 8);
const IMAGE_MB = Number(process.env.BENCH_IMAGE_MB ?? 100);

function log(line: string) {
  process.stderr.write(`[bench:images] ${line}\n`);
}

async function main() {
  const work = await mkdtemp("/var/tmp/sandpit-bench-images-");
  const registry = await startRegistry();
  try {
    // Random bytes do not compress: the layers weigh what the image says, in two layers of half each.
    const halves = [0, 1].map((i) => {
      const dir = layerTree(work, { [`payload/part${i}/README`]: "random payload\n" });
      execFileSync("sh", [
        "-c",
        `head -c ${Math.round((IMAGE_MB / 2) * 1024 * 1024)} /dev/urandom > ${path.join(dir, `payload/part${i}/data.bin`)}`,
      ]);
      return dir;
    });
    const pushed = await pushImage(registry, "bench/big", "1", [busyboxLayer(work), ...halves], {
      Env: ["PATH=/bin"],
      WorkingDir: "/payload",
    });
    const sizeMb = (pushed.manifest.layers as { size: number }[]).reduce((n, l) => n + l.size, 0) / 1024 / 1024;
    log(`pushed a ${sizeMb.toFixed(1)} MB image (${pushed.layerDigests.length} layers)`);
    const server = await startTestServer({ SANDPIT_OUTBOUND_ALLOWED_HOSTS: registry.allowedHosts.join(",") });
    const api = apiClient(server);
    try {
      const image = { uri: `${registry.host}/bench/big:1` };
      const create = async (body: Record<string, unknown>) => {
        let id = "";
        const ms = await timeIt(async () => {
          id = (await api.createSandbox({ ...body, resources: { vcpus: 1, memoryMb: 512, diskMb: 1024 } })).id;
        });
        await api.del(`/v1/sandboxes/${id}`);
        return ms;
      };
      const firstCreate = await create({ image });
      log(`pull + first create: ${firstCreate.toFixed(0)} ms`);
      await create({ template: "base" }); // warm-up of the template path
      const cached: number[] = [];
      const template: number[] = [];
      for (let i = 0; i < N; i++) {
        cached.push(await create({ image }));
        template.push(await create({ template: "base" }));
      }
      const rows = [
        ["what", "n", "p50", "p95"],
        [`pull + first create (${sizeMb.toFixed(0)} MB image)`, "1", `${firstCreate.toFixed(0)} ms`, ""],
        ...(
          [
            ["create from the cached image", summarize(cached)],
            ["create from the base template", summarize(template)],
          ] as const
        ).map(([name, s]) => [name, String(s.n), `${s.p50.toFixed(0)} ms`, `${s.p95.toFixed(0)} ms`]),
      ];
      const widths = rows[0]!.map((_, i) => Math.max(...rows.map((r) => r[i]!.length)));
      for (const r of rows) process.stdout.write(`${r.map((c, i) => c.padEnd(widths[i]!)).join("  ")}\n`);
      const out = path.join(repoRoot, "bench/results");
      await mkdir(out, { recursive: true });
      const file = path.join(out, `images-${new Date().toISOString().replace(/[:.]/g, "-")}.json`);
      await writeFile(
        file,
        JSON.stringify(
          { imageMb: sizeMb, firstCreateMs: firstCreate, cached: summarize(cached), base: summarize(template) },
          null,
          2,
        ),
      );
      log(`wrote ${file}`);
    } finally {
      await server.close();
    }
  } finally {
    await registry.close();
    await rm(work, { recursive: true, force: true });
  }
}

main().catch((e) => {
  process.stderr.write(`${e instanceof Error ? e.stack : e}\n`);
  process.exit(1);
});
