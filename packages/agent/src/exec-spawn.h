/* Spawning a command's main process: clone(CLONE_VM|CLONE_VFORK), on pipes or on a new terminal, with
 * its cwd, user, group and environment, and the execvp-like lookup along PATH. */
#ifndef SANDPIT_EXEC_SPAWN_H
#define SANDPIT_EXEC_SPAWN_H

#include <sys/types.h>

#include "exec-registry.h"

/* How far the child got before it failed (STAGE_OK: it exec'd). */
enum { STAGE_OK = 0, STAGE_SETUP, STAGE_CWD, STAGE_GID, STAGE_UID, STAGE_EXEC };

struct child_err {
    int stage;
    int err;
};

struct spawn_spec {
    char **argv; /* argv[-1] is a spare slot for the ENOEXEC /bin/sh fallback */
    char **envp;
    const char *path; /* PATH of the request's env, or NULL */
    const char *cwd;
    int set_uid, set_gid;
    uid_t uid;
    gid_t gid;
    int pty; /* run on a new terminal (the command's controlling tty) of cols x rows */
    unsigned short cols, rows;
};

/* Finds the signals a child must reset before exec. Called once at start, before any spawn. */
void spawn_init(void);
/* Spawns the command, which must be registered: sets its stdin (and pty_fd on a terminal) and records
 * its pid with the reaper. 0 ok (ce tells whether the child failed before exec; *err_rd is -1 on a
 * terminal, whose output is all on *out_rd), -1 errno. */
int spawn_command(struct command *cmd, const struct spawn_spec *sp, int *out_rd, int *err_rd,
                  struct child_err *ce);

#endif
