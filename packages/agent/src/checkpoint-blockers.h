/* What keeps gVisor from checkpointing the sandbox (pause, hibernation, snapshots). */
#ifndef SANDPIT_CHECKPOINT_BLOCKERS_H
#define SANDPIT_CHECKPOINT_BLOCKERS_H

#include "http.h"

/* GET /checkpoint-blockers → [{"pid", "command", "path"}]: files and directories that processes keep open,
 * mapped or as their working directory after they were deleted, on a filesystem the sandbox's host serves
 * (its disk, volumes). The runsc this project
 * installs cannot save those: its checkpoint fails, and the sandbox dies with it. Deleted files in tmpfs
 * live in the sandbox's memory and are saved with it. At most BLOCKERS_MAX entries. */
void handle_checkpoint_blockers(struct http_conn *c);

#endif
