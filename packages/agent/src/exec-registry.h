/* Commands and the table of known commands: reference counts, lookup by id, stdin, eviction of finished
 * background commands. */
#ifndef SANDPIT_EXEC_REGISTRY_H
#define SANDPIT_EXEC_REGISTRY_H

#include <pthread.h>
#include <stdint.h>
#include <sys/types.h>

#include "http.h"
#include "util.h"

#define CMD_IOBUF 65536 /* one read or write on a command's streams or its log */

/* A GET /commands/{id}/frames?follow=1 waiting for the log to grow. */
struct follower {
    int wake_wr;
    struct follower *next;
};

struct command {
    struct command *next; /* table list, under g_cmd_mu */
    int refs;             /* under g_cmd_mu */
    int in_table;
    uint64_t seq;
    char id[AGENT_ID_MAX + 1];
    /* "SANDPIT_COMMAND_ID=<id>", put in the command's environment: processes that left the tree
     * (double fork, setsid) still carry it, so kill_tree finds them too. */
    char marker[AGENT_ID_MAX + 32];
    int background;

    /* under g_cmd_mu */
    pid_t pid;   /* 0 until forked */
    int running; /* forked and not yet reaped */
    int status;  /* wait status once reaped */
    int64_t start_ms, end_ms;
    int timed_out, truncated;
    int done; /* the exit frame was emitted */
    uint64_t log_size;
    struct follower *followers;

    int exit_rd, exit_wr; /* the reaper writes one byte to exit_wr when the process was reaped */

    pthread_mutex_t stdin_mu;
    int stdin_fd; /* under stdin_mu; -1 when closed */

    int log_fd; /* background only; written by the pump thread only */

    int pty_fd; /* a terminal's master side, for resizing; -1 without a terminal */
};

/* Guards the table and the fields of every command marked "under g_cmd_mu". */
extern pthread_mutex_t g_cmd_mu;

/* A new command holding one reference (the caller's); NULL (errno) on failure. */
struct command *cmd_new(const char *id, int background);
void cmd_ref(struct command *cmd);
void cmd_unref(struct command *cmd);
/* The command with this id in the table, with a reference for the caller; NULL when unknown. */
struct command *cmd_find(const char *id);
/* The running command whose main process is pid; NULL when none. Caller holds g_cmd_mu. */
struct command *cmd_find_running_locked(pid_t pid);
/* Calls fn for every command in the table, newest first. Caller holds g_cmd_mu. */
void cmd_each_locked(void (*fn)(struct command *cmd, void *arg), void *arg);
/* Inserts cmd under its id (the table takes a reference). -1 when the id is taken. */
int cmd_register(struct command *cmd);
void cmd_unregister(struct command *cmd);

void cmd_stdin_close(struct command *cmd);
/* Writes `pre` (body bytes already read) and then the rest of the request body to the command's stdin.
 * When a write fails (the reader is gone) stdin is closed and the rest of the body is read and dropped.
 * 0 all written; 1 stdin was or became closed; -1 the body could not be read (the connection is dead);
 * -2 out of memory (nothing was read). */
int cmd_stdin_from_body(struct http_conn *c, struct command *cmd, const char *pre, size_t prelen);

#endif
