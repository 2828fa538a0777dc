/* The process guard: every command runs in a guest pids cgroup that the guard empties (kill -9 of all its
 * processes) as soon as it is full, so a fork bomb fails fast instead of growing gVisor's host stub
 * processes until the sandbox runs out of memory. */
#ifndef SANDPIT_PROCESS_GUARD_H
#define SANDPIT_PROCESS_GUARD_H

/* Tasks (processes and threads) all commands together may have at once. */
#define GUARD_PIDS_MAX 512

/* Called by the guest init while it still holds CAP_SYS_ADMIN: mounts the pids controller, creates the
 * commands' cgroup and keeps descriptors on it, then detaches the mount so that no command can reach it.
 * 0 ok, -1 (logged; commands then run without a guard). */
int guard_setup(const char *run_dir);
/* Starts the guard thread in the server. No-op without guard_setup. */
void guard_start(void);
/* Moves the calling process into the commands' cgroup. Async-signal-safe, raw system calls only (it runs
 * in the spawn child, which shares the server's memory). 0 ok or no guard, else an errno. */
int guard_enter(void);

#endif
