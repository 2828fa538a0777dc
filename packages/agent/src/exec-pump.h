/* The output pump: moves a command's output into frames, to the client (foreground) or to its log
 * (background), enforcing its timeout and output limit; in the foreground it also forwards the request
 * body to stdin and kills the command when the client goes away. */
#ifndef SANDPIT_EXEC_PUMP_H
#define SANDPIT_EXEC_PUMP_H

#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>

#include "exec-registry.h"
#include "exec-spawn.h"
#include "http.h"

struct pump {
    struct command *cmd;
    struct http_conn *conn; /* foreground: the client; NULL: background (frames go to the log) */
    int out_fd, err_fd;
    int64_t deadline; /* absolute (now_ms) or 0 */
    uint64_t max_output, delivered;
    int stdin_open;
    /* foreground: request body still to be forwarded to stdin */
    char *inbuf;
    size_t incap, in_off, in_len;
    int body_eof, stdin_done, sock_extra;
    int client_gone;
    int log_broken;
};

/* Marks the client gone (the connection is dead) and kills the command's tree. */
void pump_client_gone(struct pump *p);
void emit_started(struct pump *p, pid_t pid);
/* The error frame for a child that failed before exec. */
void emit_spawn_error(struct pump *p, const struct child_err *ce, const char *argv0, const char *cwd);
void emit_exit(struct pump *p);
/* Moves output into frames until the main process exited and its pipes are drained. Returns 1 when the
 * main process exited (the exit frame can be sent). */
int pump_run(struct pump *p);
/* Runs a background command's pump on its own thread, which takes over p and a reference to p->cmd,
 * emits the exit frame and marks the command done. 0 ok, else pthread_create's error (p is still the
 * caller's). */
int pump_start_background(struct pump *p);

#endif
