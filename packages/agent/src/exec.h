/* Commands: spawning, the reaper, output frames, background logs, process-tree kill. */
#ifndef SANDPIT_EXEC_H
#define SANDPIT_EXEC_H

#include <sys/types.h>

#include "http.h"

enum {
    FRAME_STDOUT = 1,
    FRAME_STDERR = 2,
    FRAME_EXIT = 3,
    FRAME_STARTED = 4,
    FRAME_ERROR = 5,
};

/* Starts the reaper thread. Must be called once before any command is spawned. */
int exec_init(void);

void handle_exec(struct http_conn *c);
void handle_commands_list(struct http_conn *c);
void handle_command_status(struct http_conn *c, const char *id);
void handle_command_frames(struct http_conn *c, const char *id);
void handle_command_signal(struct http_conn *c, const char *id);
void handle_command_stdin(struct http_conn *c, const char *id);
void handle_command_resize(struct http_conn *c, const char *id);

/* SIGKILL to the process group `root` and to every descendant of `root` found in /proc (stopping them
 * first so that none can fork away while the tree is collected). */
/* Stops and SIGKILLs root, its process group, its descendants, and (marker != NULL) every process whose
 * environment carries the entry `marker`. */
void kill_tree(pid_t root, const char *marker);
/* Kills the trees of all running commands (used on SIGTERM when not supervised). */
void exec_kill_all(void);

#endif
