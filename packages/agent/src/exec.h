/* Commands: the /exec and /commands endpoints and what the rest of the agent needs of them. The parts:
 * exec-registry (the command table), exec-spawn, exec-reaper, exec-pump (output frames), exec-log
 * (background logs), exec-kill (process-tree kill), exec-commands (the /commands endpoints). */
#ifndef SANDPIT_EXEC_H
#define SANDPIT_EXEC_H

#include "http.h"

/* Frame types: type:u8 | length:u32be | payload, to the client or to a background command's log. */
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

/* Kills the trees of all running commands (used on SIGTERM when not supervised). */
void exec_kill_all(void);

#endif
