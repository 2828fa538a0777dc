/* The reaper: one thread that waits for every child of the agent and marks the command it belonged to
 * as exited (its exit_wr gets a byte). */
#ifndef SANDPIT_EXEC_REAPER_H
#define SANDPIT_EXEC_REAPER_H

#include <stdint.h>
#include <sys/types.h>

#include "exec-registry.h"

/* Starts the reaper thread. 0 ok, -1 failure. */
int reaper_start(void);
/* A mark taken just before a child is created, for reaper_record_spawn. */
uint64_t reaper_mark(void);
/* Records a spawned child (started at t0, created after `mark`); an exit the reaper saw before the pid
 * was known is applied now. */
void reaper_record_spawn(struct command *cmd, pid_t pid, int64_t t0, uint64_t mark);

#endif
