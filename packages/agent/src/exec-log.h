/* A background command's log: <run_dir>/<id>.frames holds the frames it emitted, in order; followers
 * are woken when it grows. */
#ifndef SANDPIT_EXEC_LOG_H
#define SANDPIT_EXEC_LOG_H

#include <stddef.h>

#include "exec-registry.h"
#include "json.h"

/* The log's path. 0 ok, -1 it does not fit in n. */
int log_path(char *out, size_t n, const char *id);
/* Creates (or truncates) the log of command `id` for appending. The fd, or -1 (errno). */
int log_open(const char *id);
/* Appends one frame to cmd->log_fd and wakes the followers. -1 when the write failed: the log is cut
 * back to its last whole frame. */
int log_append(struct command *cmd, int type, const void *data, size_t len);
/* Wakes the followers of cmd's log. Caller holds g_cmd_mu. */
void log_notify_locked(struct command *cmd);
/* The status of command `id` from the started and exit frames of its log, for a command no longer in
 * the table (evicted, or run by a previous server process). 0 when the log has an exit frame. */
int log_status(const char *id, struct jbuf *b);

#endif
