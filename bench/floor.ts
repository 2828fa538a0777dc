import type { Sandbox } from "sandpit";

/**
 * A Python script that spawns `/bin/true` `count` times from inside the sandbox (posix_spawn + waitpid,
 * with its own environment) and prints each spawn's milliseconds: the floor any exec pays. `gapMs` sleeps
 * before each spawn, timing only the spawn: after a few idle milliseconds gVisor's threads have gone to
 * sleep and a spawn costs more than in a tight loop, which is the case of an exec arriving over the API.
 */
export function spawnFloorScript(count: number, gapMs = 0): string {
  return [
    "import os,time",
    "ts=[]",
    `for i in range(${count}):`,
    ...(gapMs > 0 ? [` time.sleep(${gapMs / 1000})`] : []),
    " t=time.perf_counter(); pid=os.posix_spawn('/bin/true',['/bin/true'],os.environ); os.waitpid(pid,0)",
    " ts.append((time.perf_counter()-t)*1000)",
    "print(' '.join(str(t) for t in ts))",
  ].join("\n");
}

/** Runs one of these Python scripts inside `sandbox`; returns the milliseconds it printed. */
async function runTimingScript(sandbox: Sandbox, script: string): Promise<number[]> {
  const out = await sandbox.commands.run(["python3", "-c", script]);
  return ("stdout" in out ? out.stdout : "").trim().split(" ").map(Number);
}

/** One round of the floor inside `sandbox`: 20 spawns hot, then 20 after 5 ms idle each, added to the lists. */
export async function measureSpawnFloors(sandbox: Sandbox, hot: number[], idle: number[]): Promise<void> {
  for (const [gapMs, into] of [
    [0, hot],
    [5, idle],
  ] as const) {
    into.push(...(await runTimingScript(sandbox, spawnFloorScript(20, gapMs))));
  }
}

/**
 * The proposed way below the floor, measured rather than built: a child forked ahead that waits on
 * a pipe and only has to `execve` when the command comes (what a pre-forked exec helper would do), timed
 * from the write that releases it to its exit, `gapMs` after it was forked. `wakeOnly` exits without the
 * `execve`, which leaves the wake-up alone.
 */
export function preforkedSpawnScript(count: number, gapMs: number, wakeOnly = false): string {
  return [
    "import os,time",
    "ts=[]",
    `for i in range(${count}):`,
    " r,w=os.pipe(); pid=os.fork()",
    " if pid==0:",
    "  os.close(w); os.read(r,1)",
    ...(wakeOnly ? [] : ["  os.execve('/bin/true',['/bin/true'],os.environ)"]),
    "  os._exit(0)",
    ` os.close(r); time.sleep(${gapMs / 1000})`,
    " t=time.perf_counter(); os.write(w,b'x'); os.waitpid(pid,0)",
    " ts.append((time.perf_counter()-t)*1000); os.close(w)",
    "print(' '.join(str(t) for t in ts))",
  ].join("\n");
}

/** One round of the pre-forked child (20 execs, 5 ms after each fork) and of its wake-up alone. */
export async function measurePreforkedSpawn(sandbox: Sandbox, exec: number[], wake: number[]): Promise<void> {
  for (const [wakeOnly, into] of [
    [false, exec],
    [true, wake],
  ] as const) {
    into.push(...(await runTimingScript(sandbox, preforkedSpawnScript(20, 5, wakeOnly))));
  }
}
