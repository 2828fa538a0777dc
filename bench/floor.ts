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
