#include "exec.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <poll.h>
#include <pthread.h>
#include <sched.h>
#include <signal.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <sys/uio.h>
#include <sys/wait.h>
#include <unistd.h>

#include "json.h"
#include "util.h"

#define IOBUF 65536
#define FIELDS_MAX (1u << 20)          /* arg/env/... fields of one /exec request */
#define DEFAULT_MAX_OUTPUT (16u << 20) /* stdout+stderr bytes delivered per command */
#define DRAIN_MS 100                   /* pipes are drained this long after the main process exited */
#define MAX_FINISHED_KEPT 256          /* finished background commands remembered for /commands */
#define DEFAULT_PATH "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"

struct follower {
    int wake_wr;
    struct follower *next;
};

struct command {
    struct command *next; /* table list, under g_mu */
    int refs;             /* under g_mu */
    int in_table;
    uint64_t seq;
    char id[AGENT_ID_MAX + 1];
    /* "SANDPIT_COMMAND_ID=<id>", put in the command's environment: processes that left the tree
     * (double fork, setsid) still carry it, so kill_tree finds them too. */
    char marker[AGENT_ID_MAX + 32];
    int background;

    /* under g_mu */
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

static pthread_mutex_t g_mu = PTHREAD_MUTEX_INITIALIZER;
static pthread_cond_t g_spawn_cond = PTHREAD_COND_INITIALIZER;
static uint64_t g_spawn_gen;
static uint64_t g_seq;
static struct command *g_cmds;

static int log_path(char *out, size_t n, const char *id);

/* ---------- command objects ---------- */

static struct command *cmd_new(const char *id, int background)
{
    struct command *cmd = calloc(1, sizeof *cmd);
    if (!cmd) return NULL;
    int p[2];
    if (pipe2(p, O_CLOEXEC | O_NONBLOCK) != 0) {
        free(cmd);
        return NULL;
    }
    cmd->exit_rd = p[0];
    cmd->exit_wr = p[1];
    cmd->refs = 1;
    snprintf(cmd->id, sizeof cmd->id, "%s", id);
    cmd->background = background;
    cmd->stdin_fd = -1;
    cmd->log_fd = -1;
    cmd->pty_fd = -1;
    pthread_mutex_init(&cmd->stdin_mu, NULL);
    return cmd;
}

static void cmd_destroy(struct command *cmd)
{
    close(cmd->exit_rd);
    close(cmd->exit_wr);
    if (cmd->stdin_fd >= 0) close(cmd->stdin_fd);
    if (cmd->log_fd >= 0) close(cmd->log_fd);
    if (cmd->pty_fd >= 0) close(cmd->pty_fd);
    pthread_mutex_destroy(&cmd->stdin_mu);
    free(cmd);
}

/* Returns 1 when the caller must destroy cmd (after unlocking). */
static int cmd_unref_locked(struct command *cmd) { return --cmd->refs == 0; }

static void cmd_unref(struct command *cmd)
{
    pthread_mutex_lock(&g_mu);
    int last = cmd_unref_locked(cmd);
    pthread_mutex_unlock(&g_mu);
    if (last) cmd_destroy(cmd);
}

static struct command *find_locked(const char *id)
{
    for (struct command *c = g_cmds; c; c = c->next)
        if (strcmp(c->id, id) == 0) return c;
    return NULL;
}

static struct command *cmd_find(const char *id)
{
    pthread_mutex_lock(&g_mu);
    struct command *c = find_locked(id);
    if (c) c->refs++;
    pthread_mutex_unlock(&g_mu);
    return c;
}

static void unlink_locked(struct command *cmd)
{
    for (struct command **pp = &g_cmds; *pp; pp = &(*pp)->next) {
        if (*pp == cmd) {
            *pp = cmd->next;
            cmd->next = NULL;
            cmd->in_table = 0;
            return;
        }
    }
}

/* Drops the oldest finished background commands beyond MAX_FINISHED_KEPT. Their logs stay on disk. */
static void evict_locked(struct command **to_destroy)
{
    for (;;) {
        int finished = 0;
        struct command *oldest = NULL;
        for (struct command *c = g_cmds; c; c = c->next) {
            if (!c->done || c->running) continue;
            finished++;
            if (!oldest || c->seq < oldest->seq) oldest = c;
        }
        if (finished <= MAX_FINISHED_KEPT || !oldest) return;
        unlink_locked(oldest);
        if (cmd_unref_locked(oldest)) {
            oldest->next = *to_destroy;
            *to_destroy = oldest;
        }
    }
}

/* Inserts cmd under its id (the table takes a reference). -1 when the id is taken. */
static int cmd_register(struct command *cmd)
{
    struct command *dead = NULL;
    pthread_mutex_lock(&g_mu);
    if (find_locked(cmd->id)) {
        pthread_mutex_unlock(&g_mu);
        return -1;
    }
    cmd->refs++;
    cmd->in_table = 1;
    cmd->seq = ++g_seq;
    cmd->next = g_cmds;
    g_cmds = cmd;
    evict_locked(&dead);
    pthread_mutex_unlock(&g_mu);
    while (dead) {
        struct command *n = dead->next;
        cmd_destroy(dead);
        dead = n;
    }
    return 0;
}

static void cmd_unregister(struct command *cmd)
{
    pthread_mutex_lock(&g_mu);
    int last = 0;
    if (cmd->in_table) {
        unlink_locked(cmd);
        last = cmd_unref_locked(cmd);
    }
    pthread_mutex_unlock(&g_mu);
    if (last) cmd_destroy(cmd);
}

static void stdin_close(struct command *cmd)
{
    pthread_mutex_lock(&cmd->stdin_mu);
    if (cmd->stdin_fd >= 0) close(cmd->stdin_fd);
    cmd->stdin_fd = -1;
    pthread_mutex_unlock(&cmd->stdin_mu);
}

/* ---------- reaper ---------- */

/* Exits reaped before the spawning thread recorded the pid (the child can exec, fail and exit before
 * clone() returns in its parent). The spawner looks here right after recording the pid; reap_seq keeps
 * an old entry of a reused pid from matching. */
#define EARLY_MAX 64
struct early_exit {
    pid_t pid;
    int status;
    int64_t t;
    uint64_t seq;
};
static struct early_exit g_early[EARLY_MAX];
static unsigned g_early_next;
static uint64_t g_reap_seq;

static void mark_exited_locked(struct command *c, int st, int64_t t)
{
    c->running = 0;
    c->status = st;
    c->end_ms = t;
    ssize_t w = write(c->exit_wr, "x", 1);
    (void)w;
}

static void *reaper_main(void *arg)
{
    (void)arg;
    for (;;) {
        pthread_mutex_lock(&g_mu);
        uint64_t gen = g_spawn_gen;
        pthread_mutex_unlock(&g_mu);
        int st;
        pid_t pid = waitpid(-1, &st, 0);
        if (pid < 0) {
            if (errno == EINTR) continue;
            /* ECHILD: sleep until something is spawned */
            pthread_mutex_lock(&g_mu);
            while (g_spawn_gen == gen) pthread_cond_wait(&g_spawn_cond, &g_mu);
            pthread_mutex_unlock(&g_mu);
            continue;
        }
        int64_t t = now_ms();
        pthread_mutex_lock(&g_mu);
        g_reap_seq++;
        struct command *c;
        for (c = g_cmds; c; c = c->next)
            if (c->running && c->pid == pid) break;
        if (c) {
            mark_exited_locked(c, st, t);
        } else {
            struct early_exit *e = &g_early[g_early_next++ % EARLY_MAX];
            e->pid = pid;
            e->status = st;
            e->t = t;
            e->seq = g_reap_seq;
        }
        pthread_mutex_unlock(&g_mu);
    }
    return NULL;
}

static void find_signals_to_reset(void);

int exec_init(void)
{
    find_signals_to_reset();
    pthread_attr_t attr;
    pthread_attr_init(&attr);
    pthread_attr_setdetachstate(&attr, PTHREAD_CREATE_DETACHED);
    pthread_attr_setstacksize(&attr, 64 * 1024);
    pthread_t t;
    int rc = pthread_create(&t, &attr, reaper_main, NULL);
    pthread_attr_destroy(&attr);
    return rc == 0 ? 0 : -1;
}

/* ---------- process tree kill ---------- */

struct pinfo {
    pid_t pid, ppid, pgrp;
    int marked; /* its environment carries the command's marker */
};

/* Whether /proc/<pid>/environ holds the entry `marker` exactly. */
static int environ_has(const char *pid, const char *marker)
{
    char path[64];
    snprintf(path, sizeof path, "/proc/%.20s/environ", pid);
    int fd = open(path, O_RDONLY | O_CLOEXEC);
    if (fd < 0) return 0;
    enum { ENVIRON_MAX = 65536 };
    char *buf = malloc(ENVIRON_MAX);
    if (!buf) {
        close(fd);
        return 0;
    }
    ssize_t r = read(fd, buf, ENVIRON_MAX - 1);
    close(fd);
    int found = 0;
    size_t mlen = strlen(marker);
    for (ssize_t i = 0; r > 0 && i < r && !found;) {
        size_t len = strnlen(buf + i, (size_t)(r - i));
        found = len == mlen && memcmp(buf + i, marker, mlen) == 0;
        i += (ssize_t)len + 1;
    }
    free(buf);
    return found;
}

static size_t scan_procs(struct pinfo **out, const char *marker)
{
    *out = NULL;
    DIR *d = opendir("/proc");
    if (!d) return 0;
    size_t n = 0, cap = 0;
    struct pinfo *v = NULL;
    struct dirent *e;
    while ((e = readdir(d)) != NULL) {
        if (e->d_name[0] < '1' || e->d_name[0] > '9') continue;
        char path[64];
        snprintf(path, sizeof path, "/proc/%.20s/stat", e->d_name);
        int fd = open(path, O_RDONLY | O_CLOEXEC);
        if (fd < 0) continue;
        char buf[512];
        ssize_t r = read(fd, buf, sizeof buf - 1);
        close(fd);
        if (r <= 0) continue;
        buf[r] = 0;
        char *rp = strrchr(buf, ')');
        if (!rp || rp[1] != ' ') continue;
        char state;
        int ppid, pgrp;
        if (sscanf(rp + 2, "%c %d %d", &state, &ppid, &pgrp) != 3) continue;
        if (n == cap) {
            size_t nc = cap ? cap * 2 : 256;
            struct pinfo *nv = realloc(v, nc * sizeof *v);
            if (!nv) break;
            v = nv;
            cap = nc;
        }
        v[n].pid = (pid_t)atoi(e->d_name);
        v[n].ppid = ppid;
        v[n].pgrp = pgrp;
        v[n].marked = marker ? environ_has(e->d_name, marker) : 0;
        n++;
    }
    closedir(d);
    *out = v;
    return n;
}

static int pid_in(const pid_t *set, size_t n, pid_t p)
{
    for (size_t i = 0; i < n; i++)
        if (set[i] == p) return 1;
    return 0;
}

void kill_tree(pid_t root, const char *marker)
{
    if (root <= 1) return;
    pid_t self = getpid();
    size_t n = 0, cap = 64;
    pid_t *set = malloc(cap * sizeof *set);
    kill(-root, SIGSTOP);
    kill(root, SIGSTOP);
    if (set) {
        set[n++] = root;
        for (int pass = 0; pass < 32; pass++) {
            struct pinfo *v;
            size_t nv = scan_procs(&v, marker);
            int grew = 0, changed;
            do {
                changed = 0;
                for (size_t i = 0; i < nv; i++) {
                    pid_t p = v[i].pid;
                    if (p <= 1 || p == self || pid_in(set, n, p)) continue;
                    if (v[i].pgrp != root && !v[i].marked && !pid_in(set, n, v[i].ppid)) continue;
                    if (n == cap) {
                        pid_t *ns = realloc(set, cap * 2 * sizeof *set);
                        if (!ns) continue;
                        set = ns;
                        cap *= 2;
                    }
                    set[n++] = p;
                    kill(p, SIGSTOP); /* stopped processes cannot fork any more */
                    changed = grew = 1;
                }
            } while (changed);
            free(v);
            if (!grew) break; /* a full scan found nothing new: the tree is complete */
        }
        for (size_t i = 0; i < n; i++) kill(set[i], SIGKILL);
        free(set);
    }
    kill(-root, SIGKILL);
    kill(root, SIGKILL);
}

void exec_kill_all(void)
{
    pthread_mutex_lock(&g_mu);
    for (struct command *c = g_cmds; c; c = c->next)
        if (c->running && c->pid > 0) kill_tree(c->pid, c->marker);
    pthread_mutex_unlock(&g_mu);
}

/* ---------- spawning ---------- */

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

/* What the child needs. It runs in the parent's memory (CLONE_VM) while the parent thread is suspended
 * (CLONE_VFORK), so it reports a failure by writing `err` directly. */
struct child_args {
    const struct spawn_spec *sp;
    int in_rd, out_wr, err_wr;
    volatile struct child_err err;
};

#define CHILD_STACK (64 * 1024)

/* The child shares the parent's memory and TLS: it must not take libc locks or allocate, so it uses raw
 * system calls where libc keeps state. */
static void child_fail(struct child_args *a, int stage, int err) __attribute__((noreturn));
static void child_fail(struct child_args *a, int stage, int err)
{
    a->err.err = err;
    a->err.stage = stage;
    syscall(SYS_exit_group, stage == STAGE_EXEC && err == ENOENT ? 127 : 126);
    for (;;) {
    }
}

static int try_exec(const char *file, char **argv, char **envp)
{
    execve(file, argv, envp);
    int e = errno;
    if (e == ENOEXEC) {
        /* like execvp: a file without a #! line is a shell script */
        char *saved = argv[0];
        argv[-1] = "sh";
        argv[0] = (char *)file;
        execve("/bin/sh", argv - 1, envp);
        argv[0] = saved;
    }
    return e;
}

/* execvp with an explicit PATH. Returns the errno to report. Async-signal-safe. */
static int exec_lookup(char **argv, char **envp, const char *path)
{
    const char *file = argv[0];
    if (!file[0]) return ENOENT;
    if (strchr(file, '/')) return try_exec(file, argv, envp);
    size_t fl = strlen(file);
    if (fl > NAME_MAX) return ENAMETOOLONG;
    if (!path) path = DEFAULT_PATH;
    char buf[PATH_MAX];
    int seen_eacces = 0;
    const char *p = path;
    for (;;) {
        const char *z = strchr(p, ':');
        if (!z) z = p + strlen(p);
        size_t dl = (size_t)(z - p);
        if (dl + 1 + fl + 1 <= sizeof buf) {
            memcpy(buf, p, dl);
            if (dl) buf[dl++] = '/';
            memcpy(buf + dl, file, fl + 1);
            int e = try_exec(buf, argv, envp);
            switch (e) {
            case EACCES: seen_eacces = 1; break;
            case ENOENT:
            case ENOTDIR:
            case ENAMETOOLONG:
            case ELOOP: break;
            default: return e;
            }
        }
        if (!*z) break;
        p = z + 1;
    }
    return seen_eacces ? EACCES : ENOENT;
}

struct k_sigaction {
    void (*handler)(int);
    unsigned long flags;
    void (*restorer)(void);
    uint64_t mask;
};

/* The signals the child resets to their default before exec: those the agent ignores (an ignored signal
 * stays ignored across exec) or handles (a handler must not run in the child, which shares our memory
 * until exec). Found once at start; musl's internal signals (32-34: timers, cancellation, setxid
 * broadcast) are installed lazily, so they are always in. Resetting all 64 costs ~1.5 ms per spawn
 * under gVisor, a sixth of the whole spawn. */
static int g_reset_sigs[64];
static int g_nreset;

static void find_signals_to_reset(void)
{
    g_nreset = 0;
    for (int s = 1; s < 65; s++) {
        if (s == SIGKILL || s == SIGSTOP) continue;
        struct k_sigaction cur;
        memset(&cur, 0, sizeof cur);
        int internal = s >= 32 && s <= 34;
        if (internal || (syscall(SYS_rt_sigaction, s, NULL, &cur, sizeof(uint64_t)) == 0 && cur.handler != SIG_DFL))
            g_reset_sigs[g_nreset++] = s;
    }
}

static int child_main(void *arg)
{
    struct child_args *a = arg;
    const struct spawn_spec *sp = a->sp;
    /* default dispositions, then an empty mask (the parent blocked everything around clone) */
    struct k_sigaction dfl;
    memset(&dfl, 0, sizeof dfl);
    dfl.handler = SIG_DFL;
    for (int i = 0; i < g_nreset; i++) syscall(SYS_rt_sigaction, g_reset_sigs[i], &dfl, NULL, sizeof(uint64_t));
    uint64_t none = 0;
    syscall(SYS_rt_sigprocmask, SIG_SETMASK, &none, NULL, sizeof none);
    /* A terminal's command leads its own session with the terminal as controlling tty (job control,
     * Ctrl-C as SIGINT); either way it leads a process group that kill_tree can signal. */
    if (sp->pty) syscall(SYS_setsid);
    else syscall(SYS_setpgid, 0, 0);
    if (syscall(SYS_dup3, a->in_rd, 0, 0) < 0 || syscall(SYS_dup3, a->out_wr, 1, 0) < 0 ||
        syscall(SYS_dup3, a->err_wr, 2, 0) < 0)
        child_fail(a, STAGE_SETUP, errno);
    if (sp->pty && syscall(SYS_ioctl, 0, TIOCSCTTY, 0) != 0) child_fail(a, STAGE_SETUP, errno);
    if (sp->cwd && syscall(SYS_chdir, sp->cwd) != 0) child_fail(a, STAGE_CWD, errno);
    if (sp->set_gid) {
        gid_t g = sp->gid;
        if (syscall(SYS_setgroups, 1, &g) != 0 && errno != EPERM) child_fail(a, STAGE_GID, errno);
        if (syscall(SYS_setresgid, g, g, g) != 0) child_fail(a, STAGE_GID, errno);
    }
    if (sp->set_uid) {
        uid_t u = sp->uid;
        if (!sp->set_gid) syscall(SYS_setgroups, 0, NULL); /* drop root's supplementary groups */
        if (syscall(SYS_setresuid, u, u, u) != 0) child_fail(a, STAGE_UID, errno);
    }
    int e = exec_lookup(sp->argv, sp->envp, sp->path);
    child_fail(a, STAGE_EXEC, e);
}

static void close_pair(int p[2])
{
    if (p[0] >= 0) close(p[0]);
    if (p[1] >= 0) close(p[1]);
    p[0] = p[1] = -1;
}

static int spawn_command(struct command *cmd, const struct spawn_spec *sp, int *out_rd, int *err_rd,
                         struct child_err *ce);
static pid_t clone_child(struct child_args *a, char *stack, int64_t *t0, uint64_t *seq0);
static void record_spawn(struct command *cmd, pid_t pid, int64_t t0, uint64_t seq0);

/* Spawns the command on a new pseudo-terminal: its stdin, stdout and stderr are the terminal, whose
 * master side becomes the command's stdin (input, Ctrl-C) and its only output stream. */
static int spawn_on_terminal(struct command *cmd, const struct spawn_spec *sp, int *out_rd, int *err_rd,
                             struct child_err *ce)
{
    int master = posix_openpt(O_RDWR | O_NOCTTY | O_CLOEXEC);
    if (master < 0) return -1;
    char name[64];
    int slave = -1, in_dup = -1, resize_dup = -1;
    char *stack = NULL;
    struct winsize ws = { .ws_row = sp->rows ? sp->rows : 24, .ws_col = sp->cols ? sp->cols : 80 };
    if (unlockpt(master) != 0 || ptsname_r(master, name, sizeof name) != 0) goto fail;
    slave = open(name, O_RDWR | O_NOCTTY | O_CLOEXEC);
    if (slave < 0 || ioctl(master, TIOCSWINSZ, &ws) != 0) goto fail;
    in_dup = fcntl(master, F_DUPFD_CLOEXEC, 3);
    resize_dup = fcntl(master, F_DUPFD_CLOEXEC, 3);
    stack = malloc(CHILD_STACK);
    if (in_dup < 0 || resize_dup < 0 || !stack) {
        if (!stack) errno = ENOMEM;
        goto fail;
    }
    set_nonblock(master, 1);
    set_nonblock(in_dup, 1);
    pthread_mutex_lock(&cmd->stdin_mu);
    cmd->stdin_fd = in_dup;
    pthread_mutex_unlock(&cmd->stdin_mu);
    cmd->pty_fd = resize_dup;

    struct child_args a = { .sp = sp, .in_rd = slave, .out_wr = slave, .err_wr = slave };
    a.err.stage = STAGE_OK;
    a.err.err = 0;
    int64_t t0;
    uint64_t seq0;
    pid_t pid = clone_child(&a, stack, &t0, &seq0);
    int clone_errno = errno;
    free(stack);
    close(slave);
    if (pid < 0) {
        stdin_close(cmd);
        close(master);
        errno = clone_errno;
        return -1;
    }
    record_spawn(cmd, pid, t0, seq0);
    ce->stage = a.err.stage;
    ce->err = a.err.err;
    *out_rd = master;
    *err_rd = -1;
    return 0;
fail: {
    int e = errno;
    free(stack);
    if (slave >= 0) close(slave);
    if (in_dup >= 0) close(in_dup);
    if (resize_dup >= 0 && cmd->pty_fd != resize_dup) close(resize_dup);
    close(master);
    errno = e;
    return -1;
}
}

/* Spawns the command (clone with CLONE_VM|CLONE_VFORK: under gVisor this costs half of a fork). cmd must
 * be registered. 0 ok (ce tells whether the child failed before exec), -1 errno. */
static int spawn_command(struct command *cmd, const struct spawn_spec *sp, int *out_rd, int *err_rd,
                         struct child_err *ce)
{
    int in[2] = { -1, -1 }, out[2] = { -1, -1 }, err[2] = { -1, -1 };
    if (sp->pty) return spawn_on_terminal(cmd, sp, out_rd, err_rd, ce);
    char *stack = malloc(CHILD_STACK);
    if (!stack || pipe2(in, O_CLOEXEC) != 0 || pipe2(out, O_CLOEXEC) != 0 || pipe2(err, O_CLOEXEC) != 0) {
        int e = stack ? errno : ENOMEM;
        free(stack);
        close_pair(in);
        close_pair(out);
        close_pair(err);
        errno = e;
        return -1;
    }
    set_nonblock(in[1], 1);
    set_nonblock(out[0], 1);
    set_nonblock(err[0], 1);
    pthread_mutex_lock(&cmd->stdin_mu);
    cmd->stdin_fd = in[1];
    pthread_mutex_unlock(&cmd->stdin_mu);

    struct child_args a = { .sp = sp, .in_rd = in[0], .out_wr = out[1], .err_wr = err[1] };
    a.err.stage = STAGE_OK;
    a.err.err = 0;
    int64_t t0;
    uint64_t seq0;
    pid_t pid = clone_child(&a, stack, &t0, &seq0);
    int clone_errno = errno;
    free(stack); /* the child has exec'd or exited: it no longer uses the stack */
    close(in[0]);
    close(out[1]);
    close(err[1]);
    if (pid < 0) {
        stdin_close(cmd);
        close(out[0]);
        close(err[0]);
        errno = clone_errno;
        return -1;
    }

    record_spawn(cmd, pid, t0, seq0);

    ce->stage = a.err.stage;
    ce->err = a.err.err;
    *out_rd = out[0];
    *err_rd = err[0];
    return 0;
}

/* clone(CLONE_VM|CLONE_VFORK) with every signal blocked around it; returns the pid or -1 (errno). */
static pid_t clone_child(struct child_args *a, char *stack, int64_t *t0, uint64_t *seq0)
{
    pthread_mutex_lock(&g_mu);
    *seq0 = g_reap_seq;
    pthread_mutex_unlock(&g_mu);
    *t0 = now_ms();
    /* No signal handler may run in the child while it shares our memory. */
    uint64_t all = ~(uint64_t)0, old = 0;
    syscall(SYS_rt_sigprocmask, SIG_BLOCK, &all, &old, sizeof all);
    uintptr_t top = ((uintptr_t)stack + CHILD_STACK) & ~(uintptr_t)15;
    pid_t pid = clone(child_main, (void *)top, CLONE_VM | CLONE_VFORK | SIGCHLD, a);
    int e = errno;
    syscall(SYS_rt_sigprocmask, SIG_SETMASK, &old, NULL, sizeof old);
    errno = e;
    return pid;
}

/* Records a spawned child; an exit the reaper saw before we knew the pid is applied now. */
static void record_spawn(struct command *cmd, pid_t pid, int64_t t0, uint64_t seq0)
{
    pthread_mutex_lock(&g_mu);
    cmd->pid = pid;
    cmd->running = 1;
    cmd->start_ms = t0;
    for (int i = 0; i < EARLY_MAX; i++) {
        struct early_exit *e = &g_early[i];
        if (e->pid == pid && e->seq > seq0) {
            mark_exited_locked(cmd, e->status, e->t);
            e->pid = 0;
            break;
        }
    }
    g_spawn_gen++;
    pthread_cond_signal(&g_spawn_cond);
    pthread_mutex_unlock(&g_mu);
}

/* ---------- output pump ---------- */

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

static void log_notify_locked(struct command *cmd)
{
    for (struct follower *f = cmd->followers; f; f = f->next) {
        ssize_t w = write(f->wake_wr, "x", 1);
        (void)w;
    }
}

static int log_append(struct pump *p, int type, const void *data, size_t len)
{
    struct command *cmd = p->cmd;
    if (p->log_broken) return -1;
    unsigned char hdr[5] = { (unsigned char)type, (unsigned char)(len >> 24), (unsigned char)(len >> 16),
                             (unsigned char)(len >> 8), (unsigned char)len };
    struct iovec iov[2] = { { hdr, 5 }, { (void *)data, len } };
    int cnt = 2;
    struct iovec *v = iov;
    size_t total = 5 + len, done = 0;
    while (done < total) {
        ssize_t w = writev(cmd->log_fd, v, cnt);
        if (w < 0 && errno == EINTR) continue;
        if (w <= 0) {
            logmsg("command %s: log write failed: %s", cmd->id, strerror(errno));
            pthread_mutex_lock(&g_mu);
            uint64_t keep = cmd->log_size;
            pthread_mutex_unlock(&g_mu);
            if (ftruncate(cmd->log_fd, (off_t)keep) != 0) { /* nothing more to do */
            }
            p->log_broken = 1;
            return -1;
        }
        done += (size_t)w;
        size_t left = (size_t)w;
        while (cnt > 0 && left >= v->iov_len) {
            left -= v->iov_len;
            v++;
            cnt--;
        }
        if (cnt > 0) {
            v->iov_base = (char *)v->iov_base + left;
            v->iov_len -= left;
        }
    }
    pthread_mutex_lock(&g_mu);
    cmd->log_size += total;
    log_notify_locked(cmd);
    pthread_mutex_unlock(&g_mu);
    return 0;
}

static void pump_kill(struct pump *p)
{
    pid_t pid;
    pthread_mutex_lock(&g_mu);
    pid = p->cmd->running ? p->cmd->pid : 0;
    pthread_mutex_unlock(&g_mu);
    kill_tree(pid > 0 ? pid : p->cmd->pid, p->cmd->marker);
}

static void pump_timeout(struct pump *p)
{
    p->deadline = 0;
    if (p->conn) p->conn->send_deadline = 0;
    pthread_mutex_lock(&g_mu);
    int running = p->cmd->running;
    if (running) p->cmd->timed_out = 1;
    pthread_mutex_unlock(&g_mu);
    if (running) pump_kill(p);
}

static void on_send_deadline(void *arg) { pump_timeout(arg); }

static void client_gone(struct pump *p)
{
    if (p->client_gone) return;
    p->client_gone = 1;
    if (p->conn) p->conn->dead = 1;
    pump_kill(p);
}

static int emit(struct pump *p, int type, const void *data, size_t len)
{
    if (p->conn) {
        if (p->client_gone) return -1;
        if (http_chunk_frame(p->conn, type, data, len) != 0) {
            client_gone(p);
            return -1;
        }
        return 0;
    }
    return log_append(p, type, data, len);
}

static int emit_json(struct pump *p, int type, struct jbuf *b)
{
    if (b->oom) return -1;
    return emit(p, type, b->p, b->len);
}

static void emit_started(struct pump *p, pid_t pid)
{
    struct jbuf b;
    jb_init(&b);
    jb_puts(&b, "{\"pid\":");
    jb_int(&b, pid);
    jb_putc(&b, '}');
    emit_json(p, FRAME_STARTED, &b);
    jb_free(&b);
}

static void emit_spawn_error(struct pump *p, const struct child_err *ce, const char *argv0, const char *cwd)
{
    const char *code;
    errno_status(ce->err, &code);
    char msg[1024];
    switch (ce->stage) {
    case STAGE_CWD: snprintf(msg, sizeof msg, "cwd %.900s: %s", cwd, strerror(ce->err)); break;
    case STAGE_GID: snprintf(msg, sizeof msg, "setgid: %s", strerror(ce->err)); break;
    case STAGE_UID: snprintf(msg, sizeof msg, "setuid: %s", strerror(ce->err)); break;
    case STAGE_EXEC: snprintf(msg, sizeof msg, "exec %.900s: %s", argv0, strerror(ce->err)); break;
    default: snprintf(msg, sizeof msg, "spawn: %s", strerror(ce->err)); break;
    }
    struct jbuf b;
    jb_init(&b);
    jb_puts(&b, "{\"code\":");
    jb_str(&b, code);
    jb_puts(&b, ",\"message\":");
    jb_str(&b, msg);
    jb_putc(&b, '}');
    emit_json(p, FRAME_ERROR, &b);
    jb_free(&b);
}

static void deliver(struct pump *p, int type, const char *buf, size_t n)
{
    uint64_t room = p->max_output > p->delivered ? p->max_output - p->delivered : 0;
    size_t k = n;
    if (k > room) {
        k = (size_t)room;
        if (!p->cmd->truncated) {
            pthread_mutex_lock(&g_mu);
            p->cmd->truncated = 1;
            pthread_mutex_unlock(&g_mu);
        }
    }
    if (k == 0) return;
    p->delivered += k;
    emit(p, type, buf, k);
}

static void read_output(struct pump *p, int *fdp, int type, char *buf)
{
    ssize_t n = read(*fdp, buf, IOBUF);
    if (n > 0) {
        deliver(p, type, buf, (size_t)n);
    } else if (n == 0 || (errno != EAGAIN && errno != EINTR)) {
        close(*fdp);
        *fdp = -1;
    }
}

/* Foreground: writes pending request-body bytes to the child's stdin without blocking. */
static void stdin_flush(struct pump *p)
{
    struct command *cmd = p->cmd;
    while (p->in_off < p->in_len) {
        pthread_mutex_lock(&cmd->stdin_mu);
        int fd = cmd->stdin_fd;
        ssize_t w = -1;
        int e = EPIPE;
        if (fd >= 0) {
            w = write(fd, p->inbuf + p->in_off, p->in_len - p->in_off);
            e = errno;
            if (w < 0 && e != EAGAIN && e != EINTR) {
                close(fd); /* reader gone (EPIPE): the rest of stdin is dropped */
                cmd->stdin_fd = -1;
            }
        }
        pthread_mutex_unlock(&cmd->stdin_mu);
        if (w > 0) {
            p->in_off += (size_t)w;
        } else if (w < 0 && e == EAGAIN) {
            return;
        } else if (w < 0 && e == EINTR) {
            continue;
        } else {
            p->in_off = p->in_len;
        }
    }
    p->in_off = p->in_len = 0;
    if (p->body_eof && !p->stdin_open && !p->stdin_done) {
        p->stdin_done = 1;
        stdin_close(cmd);
    }
}

static int ms_until(int64_t t)
{
    int64_t d = t - now_ms();
    if (d < 0) return 0;
    return d > 0x7fffffff ? 0x7fffffff : (int)d;
}

/* Moves output into frames until the main process exited and its pipes are drained (or DRAIN_MS passed),
 * enforcing the timeout; for foreground commands also forwards the request body to stdin and watches for
 * the client going away. Returns 1 when the main process exited (exit frame can be sent). */
static int pump_run(struct pump *p)
{
    struct command *cmd = p->cmd;
    char *buf = malloc(IOBUF);
    if (!buf) {
        pump_kill(p);
        return 0;
    }
    int exited = 0;
    int64_t drain_until = 0;
    if (p->conn) {
        p->conn->deadline_cb = on_send_deadline;
        p->conn->deadline_arg = p;
        p->conn->send_deadline = p->deadline;
    }
    for (;;) {
        if (p->client_gone) break;
        if (exited && ((p->out_fd < 0 && p->err_fd < 0) || now_ms() >= drain_until)) break;
        if (!exited && p->deadline && now_ms() >= p->deadline) pump_timeout(p);

        if (p->conn) {
            if (!p->body_eof && p->in_off == p->in_len) {
                ssize_t r = http_body_read(p->conn, p->inbuf, p->incap, 1);
                if (r > 0) {
                    p->in_off = 0;
                    p->in_len = (size_t)r;
                } else if (r == 0) {
                    p->body_eof = 1;
                } else if (r == -1) {
                    client_gone(p);
                    break;
                }
            }
            stdin_flush(p);
        }

        struct pollfd fds[5];
        int nf = 0, i_out = -1, i_err = -1, i_exit = -1, i_sock = -1, i_in = -1;
        if (p->out_fd >= 0) {
            fds[nf] = (struct pollfd){ .fd = p->out_fd, .events = POLLIN };
            i_out = nf++;
        }
        if (p->err_fd >= 0) {
            fds[nf] = (struct pollfd){ .fd = p->err_fd, .events = POLLIN };
            i_err = nf++;
        }
        if (!exited) {
            fds[nf] = (struct pollfd){ .fd = cmd->exit_rd, .events = POLLIN };
            i_exit = nf++;
        }
        if (p->conn) {
            short ev = 0;
            if (!p->body_eof) {
                if (p->in_off == p->in_len) ev = POLLIN; /* more body wanted */
            } else if (!p->sock_extra) {
                ev = POLLIN; /* EOF = client went away */
            }
            fds[nf] = (struct pollfd){ .fd = p->conn->fd, .events = ev };
            i_sock = nf++;
            if (p->in_off < p->in_len) {
                pthread_mutex_lock(&cmd->stdin_mu);
                int fd = cmd->stdin_fd;
                pthread_mutex_unlock(&cmd->stdin_mu);
                if (fd >= 0) {
                    fds[nf] = (struct pollfd){ .fd = fd, .events = POLLOUT };
                    i_in = nf++;
                }
            }
        }
        int timeout = -1;
        if (exited) timeout = ms_until(drain_until);
        else if (p->deadline) timeout = ms_until(p->deadline);
        int r = poll(fds, (nfds_t)nf, timeout);
        if (r < 0) {
            if (errno == EINTR) continue;
            logmsg("poll: %s", strerror(errno));
            client_gone(p);
            break;
        }
        if (r == 0) continue;
        if (i_exit >= 0 && fds[i_exit].revents) {
            char x;
            if (read(cmd->exit_rd, &x, 1) == 1) {
                exited = 1;
                drain_until = now_ms() + DRAIN_MS;
                if (p->conn) p->conn->send_deadline = 0;
            }
        }
        if (i_out >= 0 && fds[i_out].revents) read_output(p, &p->out_fd, FRAME_STDOUT, buf);
        if (i_err >= 0 && fds[i_err].revents) read_output(p, &p->err_fd, FRAME_STDERR, buf);
        if (i_sock >= 0 && fds[i_sock].revents) {
            short re = fds[i_sock].revents;
            if (re & (POLLERR | POLLNVAL | POLLHUP)) {
                client_gone(p); /* POLLHUP: nothing can be sent any more */
            } else if (p->body_eof && (re & POLLIN)) {
                char ch;
                ssize_t k = recv(p->conn->fd, &ch, 1, MSG_PEEK | MSG_DONTWAIT);
                if (k == 0 || (k < 0 && errno != EAGAIN && errno != EINTR)) client_gone(p);
                else if (k > 0) p->sock_extra = 1; /* a pipelined request: leave it for later */
            }
        }
        (void)i_in; /* stdin becomes writable: flushed at the top of the loop */
    }
    free(buf);
    if (p->out_fd >= 0) close(p->out_fd);
    if (p->err_fd >= 0) close(p->err_fd);
    p->out_fd = p->err_fd = -1;
    if (p->conn) {
        p->conn->send_deadline = 0;
        p->conn->deadline_cb = NULL;
    }
    return exited;
}

static void emit_exit(struct pump *p)
{
    struct command *cmd = p->cmd;
    pthread_mutex_lock(&g_mu);
    int st = cmd->status;
    int timed_out = cmd->timed_out, truncated = cmd->truncated;
    int64_t dur = cmd->end_ms - cmd->start_ms;
    pthread_mutex_unlock(&g_mu);
    int code = 0, sig = 0;
    if (WIFEXITED(st)) {
        code = WEXITSTATUS(st);
    } else if (WIFSIGNALED(st)) {
        sig = WTERMSIG(st);
        code = 128 + sig;
    }
    struct jbuf b;
    jb_init(&b);
    jb_puts(&b, "{\"exitCode\":");
    jb_int(&b, code);
    jb_puts(&b, ",\"signal\":");
    if (sig) jb_int(&b, sig);
    else jb_puts(&b, "null");
    jb_puts(&b, ",\"timedOut\":");
    jb_bool(&b, timed_out);
    jb_puts(&b, ",\"truncated\":");
    jb_bool(&b, truncated);
    jb_puts(&b, ",\"durationMs\":");
    jb_int(&b, dur < 0 ? 0 : dur);
    jb_putc(&b, '}');
    p->log_broken = 0; /* the exit frame is always attempted */
    emit_json(p, FRAME_EXIT, &b);
    jb_free(&b);
}

static void *bg_main(void *arg)
{
    struct pump *p = arg;
    struct command *cmd = p->cmd;
    if (pump_run(p)) emit_exit(p);
    stdin_close(cmd);
    pthread_mutex_lock(&g_mu);
    cmd->done = 1;
    log_notify_locked(cmd);
    pthread_mutex_unlock(&g_mu);
    free(p);
    cmd_unref(cmd);
    return NULL;
}

/* ---------- /exec ---------- */

struct exec_req {
    char *fields; /* the fields, each NUL-terminated in place */
    size_t fields_len, cap, body_len; /* stdin bytes are fields[fields_len, body_len) */
    char **argv_mem;
    char **envp;
    const char *id, *cwd, *path;
    size_t nenv;
    uint64_t timeout_ms, max_output;
    int background, stdin_open, set_uid, set_gid, pty;
    unsigned short cols, rows;
    uid_t uid;
    gid_t gid;
};

static void exec_req_free(struct exec_req *r)
{
    free(r->fields);
    free(r->argv_mem);
    free(r->envp);
}

static int starts(const char *s, const char *prefix, const char **rest)
{
    size_t n = strlen(prefix);
    if (strncmp(s, prefix, n) != 0) return 0;
    *rest = s + n;
    return 1;
}

/* Reads the fields part of the body. 0 ok; -1 error response sent (or connection dead). */
static int read_exec_fields(struct http_conn *c, struct exec_req *r)
{
    size_t len = 0, scan = 0, fstart = 0;
    for (;;) {
        if (len == r->cap) {
            if (r->cap >= FIELDS_MAX) {
                http_send_error(c, 413, "too_large", "exec fields exceed 1 MiB");
                return -1;
            }
            size_t nc = r->cap ? r->cap * 2 : 4096;
            char *nf = realloc(r->fields, nc);
            if (!nf) {
                http_send_error(c, 500, "internal", "out of memory");
                return -1;
            }
            r->fields = nf;
            r->cap = nc;
        }
        ssize_t n = http_body_read(c, r->fields + len, r->cap - len, 0);
        if (n < 0) return -1;
        if (n == 0) {
            if (len != fstart) {
                http_send_error(c, 400, "bad_request", "unterminated field");
                return -1;
            }
            r->fields_len = len;
            r->body_len = len;
            return 0;
        }
        len += (size_t)n;
        for (; scan < len; scan++) {
            if (r->fields[scan] != 0) continue;
            if (scan == fstart) { /* the empty field: stdin follows */
                r->fields_len = scan;
                r->body_len = len;
                return 0;
            }
            fstart = scan + 1;
        }
    }
}

static int parse_exec_fields(struct http_conn *c, struct exec_req *r)
{
    size_t nargs = 0, nenv = 0;
    for (size_t i = 0; i < r->fields_len; i += strlen(r->fields + i) + 1) {
        const char *f = r->fields + i, *v;
        if (starts(f, "arg=", &v)) nargs++;
        else if (starts(f, "env=", &v)) nenv++;
    }
    r->argv_mem = calloc(nargs + 2, sizeof *r->argv_mem);
    r->envp = calloc(nenv + 2, sizeof *r->envp); /* + the command marker */
    if (!r->argv_mem || !r->envp) {
        http_send_error(c, 500, "internal", "out of memory");
        return -1;
    }
    char **argv = r->argv_mem + 1;
    size_t ai = 0, ei = 0;
    r->cwd = "/";
    r->max_output = DEFAULT_MAX_OUTPUT;
    for (size_t i = 0; i < r->fields_len; i += strlen(r->fields + i) + 1) {
        const char *f = r->fields + i, *v;
        uint64_t n;
        if (starts(f, "arg=", &v)) {
            argv[ai++] = (char *)v;
        } else if (starts(f, "env=", &v)) {
            if (!strchr(v, '=')) {
                http_send_error(c, 400, "bad_request", "env entries must be K=V");
                return -1;
            }
            if (strncmp(v, "SANDPIT_COMMAND_ID=", 19) == 0) continue; /* the agent sets it */
            r->envp[ei++] = (char *)v;
            r->nenv = ei;
            if (strncmp(v, "PATH=", 5) == 0) r->path = v + 5;
        } else if (starts(f, "cwd=", &v)) {
            if (!valid_abs_path(v)) {
                http_send_error(c, 400, "bad_request", "cwd must be an absolute path");
                return -1;
            }
            r->cwd = v;
        } else if (starts(f, "id=", &v)) {
            if (!valid_id(v)) {
                http_send_error(c, 400, "bad_request", "id must be 1-128 characters of [A-Za-z0-9._-]");
                return -1;
            }
            r->id = v;
        } else if (starts(f, "timeout_ms=", &v)) {
            if (parse_u64(v, &n) != 0 || n > ((uint64_t)1 << 40)) goto bad_number;
            r->timeout_ms = n;
        } else if (starts(f, "max_output=", &v)) {
            if (parse_u64(v, &n) != 0) goto bad_number;
            r->max_output = n;
        } else if (starts(f, "uid=", &v)) {
            if (parse_u64(v, &n) != 0 || n > 0xfffffffeu) goto bad_number;
            r->uid = (uid_t)n;
            r->set_uid = 1;
        } else if (starts(f, "gid=", &v)) {
            if (parse_u64(v, &n) != 0 || n > 0xfffffffeu) goto bad_number;
            r->gid = (gid_t)n;
            r->set_gid = 1;
        } else if (starts(f, "background=", &v)) {
            r->background = strcmp(v, "1") == 0 || strcmp(v, "true") == 0;
        } else if (starts(f, "stdin_open=", &v)) {
            r->stdin_open = strcmp(v, "1") == 0 || strcmp(v, "true") == 0;
        } else if (starts(f, "pty=", &v)) {
            r->pty = strcmp(v, "1") == 0 || strcmp(v, "true") == 0;
        } else if (starts(f, "cols=", &v)) {
            if (parse_u64(v, &n) != 0 || n == 0 || n > 10000) goto bad_number;
            r->cols = (unsigned short)n;
        } else if (starts(f, "rows=", &v)) {
            if (parse_u64(v, &n) != 0 || n == 0 || n > 10000) goto bad_number;
            r->rows = (unsigned short)n;
        }
        /* unknown fields are ignored (forward compatibility) */
    }
    if (nargs == 0) {
        http_send_error(c, 400, "bad_request", "at least one arg= field is required");
        return -1;
    }
    return 0;
bad_number:
    http_send_error(c, 400, "bad_request", "invalid numeric field");
    return -1;
}

static void send_started_json(struct http_conn *c, const char *id, pid_t pid)
{
    struct jbuf b;
    jb_init(&b);
    jb_puts(&b, "{\"id\":");
    jb_str(&b, id);
    jb_puts(&b, ",\"pid\":");
    jb_int(&b, pid);
    jb_putc(&b, '}');
    if (b.oom) http_send_error(c, 500, "internal", "out of memory");
    else http_send_json(c, 200, b.p, b.len);
    jb_free(&b);
}

static int open_log(const char *id)
{
    if (mkdir_p(g_cfg.run_dir, 0700, 0700, NULL) != 0) return -1;
    char path[PATH_MAX];
    if (log_path(path, sizeof path, id) != 0) {
        errno = ENAMETOOLONG;
        return -1;
    }
    return open(path, O_WRONLY | O_CREAT | O_TRUNC | O_APPEND | O_CLOEXEC, 0600);
}

/* Background: writes the rest of the request (initial stdin) to the command's stdin. */
static int feed_stdin_from_body(struct http_conn *c, struct command *cmd, const char *pre, size_t prelen)
{
    char *buf = malloc(IOBUF);
    if (!buf) return -1;
    pthread_mutex_lock(&cmd->stdin_mu);
    int ok = cmd->stdin_fd >= 0;
    if (ok && prelen && write_all_fd(cmd->stdin_fd, pre, prelen) != 0) ok = 0;
    int rc = 0;
    for (;;) {
        ssize_t n = http_body_read(c, buf, IOBUF, 0);
        if (n == 0) break;
        if (n < 0) {
            rc = -1;
            break;
        }
        if (ok && write_all_fd(cmd->stdin_fd, buf, (size_t)n) != 0) ok = 0; /* EPIPE: drop the rest */
    }
    pthread_mutex_unlock(&cmd->stdin_mu);
    free(buf);
    return rc;
}

void handle_exec(struct http_conn *c)
{
    static uint64_t auto_id;
    struct exec_req r;
    memset(&r, 0, sizeof r);
    if (read_exec_fields(c, &r) != 0 || parse_exec_fields(c, &r) != 0) {
        exec_req_free(&r);
        return;
    }
    char idbuf[64];
    if (!r.id) {
        pthread_mutex_lock(&g_mu);
        uint64_t n = ++auto_id;
        pthread_mutex_unlock(&g_mu);
        snprintf(idbuf, sizeof idbuf, "cmd-%d-%llu", (int)getpid(), (unsigned long long)n);
        r.id = idbuf;
    }
    struct command *cmd = cmd_new(r.id, r.background);
    if (!cmd) {
        http_send_errno(c, errno, "exec");
        exec_req_free(&r);
        return;
    }
    if (cmd_register(cmd) != 0) {
        http_send_error(c, 409, "exists", "a command with this id exists");
        cmd_unref(cmd);
        exec_req_free(&r);
        return;
    }
    if (r.background) {
        cmd->log_fd = open_log(cmd->id);
        if (cmd->log_fd < 0) {
            http_send_errno(c, errno, "command log");
            goto fail_unregister;
        }
    }

    snprintf(cmd->marker, sizeof cmd->marker, "SANDPIT_COMMAND_ID=%s", cmd->id);
    r.envp[r.nenv] = cmd->marker;

    struct spawn_spec sp = {
        .argv = r.argv_mem + 1,
        .envp = r.envp,
        .path = r.path,
        .cwd = r.cwd,
        .set_uid = r.set_uid,
        .set_gid = r.set_gid,
        .uid = r.uid,
        .gid = r.gid,
        .pty = r.pty,
        .cols = r.cols,
        .rows = r.rows,
    };
    int out_fd, err_fd;
    struct child_err ce;
    if (spawn_command(cmd, &sp, &out_fd, &err_fd, &ce) != 0) {
        http_send_errno(c, errno, "spawn");
        goto fail_unregister;
    }

    struct pump *p = calloc(1, sizeof *p);
    if (!p) {
        kill_tree(cmd->pid, cmd->marker);
        close(out_fd);
        if (err_fd >= 0) close(err_fd);
        http_send_error(c, 500, "internal", "out of memory");
        goto fail_unregister;
    }
    p->cmd = cmd;
    p->out_fd = out_fd;
    p->err_fd = err_fd;
    p->max_output = r.max_output;
    p->stdin_open = r.stdin_open;
    if (r.timeout_ms) p->deadline = cmd->start_ms + (int64_t)r.timeout_ms;

    /* stdin bytes that arrived together with the fields */
    const char *pre = r.fields + r.fields_len + (r.fields_len < r.body_len ? 1 : 0);
    size_t prelen = (size_t)(r.fields + r.body_len - pre);

    if (r.background) {
        emit_started(p, cmd->pid);
        if (ce.stage != STAGE_OK) emit_spawn_error(p, &ce, sp.argv[0], r.cwd);
        pid_t pid = cmd->pid;
        pthread_mutex_lock(&g_mu);
        cmd->refs++; /* for the pump thread */
        pthread_mutex_unlock(&g_mu);
        pthread_attr_t attr;
        pthread_attr_init(&attr);
        pthread_attr_setdetachstate(&attr, PTHREAD_CREATE_DETACHED);
        pthread_attr_setstacksize(&attr, 128 * 1024);
        pthread_t t;
        int rc = pthread_create(&t, &attr, bg_main, p);
        pthread_attr_destroy(&attr);
        if (rc != 0) {
            kill_tree(pid, cmd->marker);
            close(out_fd);
            if (err_fd >= 0) close(err_fd);
            free(p);
            cmd_unref(cmd);
            http_send_errno(c, rc, "thread");
            goto fail_unregister;
        }
        /* p now belongs to the thread */
        int fr = feed_stdin_from_body(c, cmd, pre, prelen);
        if (!r.stdin_open) stdin_close(cmd);
        if (fr == 0) send_started_json(c, cmd->id, pid);
        cmd_unref(cmd);
        exec_req_free(&r);
        return;
    }

    /* foreground */
    p->conn = c;
    /* reuse the fields buffer (no longer needed after the fork) as the stdin staging buffer */
    memmove(r.fields, pre, prelen);
    p->inbuf = r.fields;
    p->incap = r.cap;
    p->in_off = 0;
    p->in_len = prelen;
    p->body_eof = c->body_done;
    http_cork(c);
    if (http_send_head(c, 200, "application/x-sandpit-frames", -1) != 0) client_gone(p);
    emit_started(p, cmd->pid);
    if (ce.stage != STAGE_OK) emit_spawn_error(p, &ce, sp.argv[0], r.cwd);
    if (http_uncork(c) != 0) client_gone(p);
    int exited = pump_run(p);
    if (exited && !p->client_gone) {
        http_cork(c);
        emit_exit(p);
        if (!p->client_gone) http_chunk_end(c);
        if (http_uncork(c) != 0) client_gone(p);
    }
    if (!exited || p->client_gone) c->dead = 1;
    free(p);
    stdin_close(cmd);
    cmd_unregister(cmd);
    cmd_unref(cmd);
    exec_req_free(&r);
    return;

fail_unregister:
    cmd_unregister(cmd);
    cmd_unref(cmd);
    exec_req_free(&r);
}

/* ---------- /commands ---------- */

static void status_json_locked(struct jbuf *b, const struct command *cmd)
{
    int running = cmd->pid == 0 || cmd->running;
    jb_puts(b, "{\"id\":");
    jb_str(b, cmd->id);
    jb_puts(b, ",\"pid\":");
    jb_int(b, cmd->pid);
    jb_puts(b, ",\"running\":");
    jb_bool(b, running);
    jb_puts(b, ",\"exitCode\":");
    int sig = 0;
    if (running) {
        jb_puts(b, "null");
    } else if (WIFSIGNALED(cmd->status)) {
        sig = WTERMSIG(cmd->status);
        jb_int(b, 128 + sig);
    } else {
        jb_int(b, WEXITSTATUS(cmd->status));
    }
    jb_puts(b, ",\"signal\":");
    if (sig) jb_int(b, sig);
    else jb_puts(b, "null");
    jb_puts(b, ",\"timedOut\":");
    jb_bool(b, cmd->timed_out);
    jb_puts(b, ",\"truncated\":");
    jb_bool(b, cmd->truncated);
    jb_puts(b, ",\"durationMs\":");
    if (running) jb_puts(b, "null");
    else jb_int(b, cmd->end_ms - cmd->start_ms);
    jb_putc(b, '}');
}

static void send_jbuf(struct http_conn *c, int status, struct jbuf *b)
{
    if (b->oom) http_send_error(c, 500, "internal", "out of memory");
    else http_send_json(c, status, b->p, b->len);
}

void handle_commands_list(struct http_conn *c)
{
    struct jbuf b;
    jb_init(&b);
    jb_putc(&b, '[');
    pthread_mutex_lock(&g_mu);
    int first = 1;
    for (struct command *cmd = g_cmds; cmd; cmd = cmd->next) {
        if (!first) jb_putc(&b, ',');
        first = 0;
        status_json_locked(&b, cmd);
    }
    pthread_mutex_unlock(&g_mu);
    jb_putc(&b, ']');
    send_jbuf(c, 200, &b);
    jb_free(&b);
}

static void not_found(struct http_conn *c) { http_send_error(c, 404, "not_found", "unknown command"); }

static int log_path(char *out, size_t n, const char *id)
{
    return (size_t)snprintf(out, n, "%s/%s.frames", g_cfg.run_dir, id) < n ? 0 : -1;
}

/* Status of a command no longer in the table (evicted, or run by a previous server process), from the
 * started and exit frames of its log. 0 when the log has an exit frame. */
static int status_from_log(const char *id, struct jbuf *b)
{
    char path[PATH_MAX];
    if (log_path(path, sizeof path, id) != 0) return -1;
    int fd = open(path, O_RDONLY | O_CLOEXEC);
    if (fd < 0) return -1;
    long long pid = 0;
    char payload[512];
    int found = 0;
    off_t off = 0;
    for (;;) {
        unsigned char h[5];
        if (pread(fd, h, 5, off) != 5) break;
        size_t len = (size_t)h[1] << 24 | (size_t)h[2] << 16 | (size_t)h[3] << 8 | h[4];
        if ((h[0] == FRAME_STARTED || h[0] == FRAME_EXIT) && len < sizeof payload) {
            if (pread(fd, payload, len, off + 5) != (ssize_t)len) break;
            payload[len] = 0;
            if (h[0] == FRAME_STARTED) {
                const char *q = strstr(payload, "\"pid\":");
                if (q) pid = atoll(q + 6);
            } else if (payload[0] == '{' && len > 2) {
                jb_puts(b, "{\"id\":");
                jb_str(b, id);
                jb_puts(b, ",\"pid\":");
                jb_int(b, pid);
                jb_puts(b, ",\"running\":false,");
                jb_raw(b, payload + 1, len - 1); /* the exit frame's fields are the status fields */
                found = 1;
                break;
            }
        }
        off += 5 + (off_t)len;
    }
    close(fd);
    return found ? 0 : -1;
}

void handle_command_status(struct http_conn *c, const char *id)
{
    struct command *cmd = cmd_find(id);
    if (!cmd) {
        struct jbuf b;
        jb_init(&b);
        if (status_from_log(id, &b) == 0) send_jbuf(c, 200, &b);
        else not_found(c);
        jb_free(&b);
        return;
    }
    struct jbuf b;
    jb_init(&b);
    pthread_mutex_lock(&g_mu);
    status_json_locked(&b, cmd);
    pthread_mutex_unlock(&g_mu);
    send_jbuf(c, 200, &b);
    jb_free(&b);
    cmd_unref(cmd);
}

void handle_command_signal(struct http_conn *c, const char *id)
{
    char *s = http_query_get(c, "signal");
    uint64_t sig;
    int bad = !s || parse_u64(s, &sig) != 0 || sig > 64;
    free(s);
    if (bad) {
        http_send_error(c, 400, "bad_request", "signal must be a number 0-64");
        return;
    }
    struct command *cmd = cmd_find(id);
    if (!cmd) {
        not_found(c);
        return;
    }
    pthread_mutex_lock(&g_mu);
    pid_t pid = cmd->running ? cmd->pid : 0;
    pthread_mutex_unlock(&g_mu);
    if (pid > 0) {
        if (sig == SIGKILL) {
            kill_tree(pid, cmd->marker);
        } else if (kill(-pid, (int)sig) != 0 && errno == ESRCH) {
            kill(pid, (int)sig); /* it left its process group */
        }
    }
    cmd_unref(cmd);
    http_send_empty(c, 204);
}

void handle_command_stdin(struct http_conn *c, const char *id)
{
    struct command *cmd = cmd_find(id);
    if (!cmd) {
        not_found(c);
        return;
    }
    if (http_query_flag(c, "close")) {
        if (http_body_discard(c, 1 << 20) != 0) c->keepalive = 0;
        stdin_close(cmd);
        cmd_unref(cmd);
        http_send_empty(c, 204);
        return;
    }
    char *buf = malloc(IOBUF);
    if (!buf) {
        cmd_unref(cmd);
        http_send_error(c, 500, "internal", "out of memory");
        return;
    }
    pthread_mutex_lock(&cmd->stdin_mu);
    int fd = cmd->stdin_fd;
    int closed = fd < 0, failed = 0;
    for (;;) {
        ssize_t n = http_body_read(c, buf, IOBUF, 0);
        if (n == 0) break;
        if (n < 0) {
            failed = 1;
            break;
        }
        if (!closed && write_all_fd(fd, buf, (size_t)n) != 0) {
            closed = 1; /* the reader is gone */
            close(fd);
            cmd->stdin_fd = -1;
        }
    }
    pthread_mutex_unlock(&cmd->stdin_mu);
    free(buf);
    cmd_unref(cmd);
    if (failed) return;
    if (closed) http_send_error(c, 409, "stdin_closed", "the command's stdin is closed");
    else http_send_empty(c, 204);
}

/* POST /commands/{id}/resize?cols=&rows= : the terminal of a command started with pty=1 */
void handle_command_resize(struct http_conn *c, const char *id)
{
    uint64_t cols = 0, rows = 0;
    char *sc = http_query_get(c, "cols"), *sr = http_query_get(c, "rows");
    int bad = !sc || !sr || parse_u64(sc, &cols) != 0 || parse_u64(sr, &rows) != 0 || cols == 0 || rows == 0 ||
              cols > 10000 || rows > 10000;
    free(sc);
    free(sr);
    if (http_body_discard(c, 1 << 20) != 0) c->keepalive = 0;
    if (bad) {
        http_send_error(c, 400, "bad_request", "cols and rows must be 1-10000");
        return;
    }
    struct command *cmd = cmd_find(id);
    if (!cmd) {
        not_found(c);
        return;
    }
    if (cmd->pty_fd < 0) {
        cmd_unref(cmd);
        http_send_error(c, 409, "no_terminal", "the command has no terminal");
        return;
    }
    struct winsize ws = { .ws_row = (unsigned short)rows, .ws_col = (unsigned short)cols };
    int rc = ioctl(cmd->pty_fd, TIOCSWINSZ, &ws);
    int e = errno;
    cmd_unref(cmd);
    if (rc != 0) http_send_errno(c, e, "resize");
    else http_send_empty(c, 204);
}

/* GET /commands/{id}/frames?offset=n&follow=1 */
void handle_command_frames(struct http_conn *c, const char *id)
{
    uint64_t off = 0;
    char *s = http_query_get(c, "offset");
    if (s && parse_u64(s, &off) != 0) {
        free(s);
        http_send_error(c, 400, "bad_request", "bad offset");
        return;
    }
    free(s);
    int follow = http_query_flag(c, "follow");
    struct command *cmd = cmd_find(id);
    if (cmd && !cmd->background) {
        cmd_unref(cmd);
        http_send_error(c, 400, "bad_request", "not a background command");
        return;
    }
    char path[PATH_MAX];
    if (log_path(path, sizeof path, id) != 0) {
        if (cmd) cmd_unref(cmd);
        http_send_errno(c, ENAMETOOLONG, NULL);
        return;
    }
    int fd = open(path, O_RDONLY | O_CLOEXEC);
    if (fd < 0) {
        int e = errno;
        if (cmd) cmd_unref(cmd);
        if (e == ENOENT) not_found(c);
        else http_send_errno(c, e, "command log");
        return;
    }
    char *buf = malloc(IOBUF);
    struct follower fl = { .wake_wr = -1, .next = NULL };
    int wake[2] = { -1, -1 };
    if (!buf) {
        close(fd);
        if (cmd) cmd_unref(cmd);
        http_send_error(c, 500, "internal", "out of memory");
        return;
    }
    if (cmd && follow) {
        if (pipe2(wake, O_CLOEXEC | O_NONBLOCK) != 0) {
            int e = errno;
            close(fd);
            free(buf);
            cmd_unref(cmd);
            http_send_errno(c, e, "pipe");
            return;
        }
        fl.wake_wr = wake[1];
        pthread_mutex_lock(&g_mu);
        fl.next = cmd->followers;
        cmd->followers = &fl;
        pthread_mutex_unlock(&g_mu);
    }
    int ok = http_send_head(c, 200, "application/x-sandpit-frames", -1) == 0;
    int extra = 0;
    while (ok) {
        uint64_t size;
        int done = 1;
        if (cmd) {
            pthread_mutex_lock(&g_mu);
            size = cmd->log_size;
            done = cmd->done;
            pthread_mutex_unlock(&g_mu);
        } else {
            struct stat st;
            size = fstat(fd, &st) == 0 ? (uint64_t)st.st_size : 0;
        }
        while (ok && off < size) {
            size_t want = size - off > IOBUF ? IOBUF : (size_t)(size - off);
            ssize_t n = pread(fd, buf, want, (off_t)off);
            if (n <= 0) {
                ok = 0;
                break;
            }
            if (http_chunk(c, buf, (size_t)n) != 0) ok = 0;
            off += (uint64_t)n;
        }
        if (!ok || !cmd || !follow || done) break;
        struct pollfd pf[2] = {
            { .fd = wake[0], .events = POLLIN },
            { .fd = c->fd, .events = extra ? 0 : POLLIN },
        };
        int r = poll(pf, 2, -1);
        if (r < 0 && errno != EINTR) ok = 0;
        if (r <= 0) continue;
        if (pf[0].revents) {
            char tmp[64];
            while (read(wake[0], tmp, sizeof tmp) > 0) {
            }
        }
        if (pf[1].revents & (POLLERR | POLLNVAL | POLLHUP)) {
            ok = 0;
        } else if (pf[1].revents & POLLIN) {
            char ch;
            ssize_t k = recv(c->fd, &ch, 1, MSG_PEEK | MSG_DONTWAIT);
            if (k == 0 || (k < 0 && errno != EAGAIN && errno != EINTR)) ok = 0;
            else if (k > 0) extra = 1;
        }
    }
    if (ok) http_chunk_end(c);
    else c->dead = 1;
    if (fl.wake_wr >= 0) {
        pthread_mutex_lock(&g_mu);
        for (struct follower **pp = &cmd->followers; *pp; pp = &(*pp)->next) {
            if (*pp == &fl) {
                *pp = fl.next;
                break;
            }
        }
        pthread_mutex_unlock(&g_mu);
        close(wake[0]);
        close(wake[1]);
    }
    free(buf);
    close(fd);
    if (cmd) cmd_unref(cmd);
}
