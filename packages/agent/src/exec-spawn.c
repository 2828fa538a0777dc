#include "exec-spawn.h"

#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <sched.h>
#include <signal.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/syscall.h>
#include <unistd.h>

#include "exec-reaper.h"
#include "process-guard.h"

#define DEFAULT_PATH "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"

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

void spawn_init(void)
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
    int ge = guard_enter();
    if (ge != 0) child_fail(a, STAGE_SETUP, ge);
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

/* The descriptors of one spawn, prepared on pipes or on a terminal. */
struct spawn_fds {
    int child_in, child_out, child_err; /* become the child's 0, 1, 2 (one fd for all three on a terminal) */
    int stdin_wr;                       /* becomes the command's stdin */
    int out_rd, err_rd;                 /* the command's output (err_rd -1 on a terminal) */
    int resize_fd;                      /* a terminal's master side, kept for resizing; -1 on pipes */
};

static void close_fd(int fd)
{
    if (fd >= 0) close(fd);
}

static void close_child_ends(const struct spawn_fds *f)
{
    close_fd(f->child_in);
    if (f->child_out != f->child_in) close_fd(f->child_out);
    if (f->child_err != f->child_in && f->child_err != f->child_out) close_fd(f->child_err);
}

static void close_spawn_fds(const struct spawn_fds *f)
{
    close_child_ends(f);
    close_fd(f->stdin_wr);
    close_fd(f->out_rd);
    close_fd(f->err_rd);
    close_fd(f->resize_fd);
}

/* clone(CLONE_VM|CLONE_VFORK) with every signal blocked around it; returns the pid or -1 (errno). */
static pid_t clone_child(struct child_args *a, char *stack)
{
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

/* Runs the child on the prepared descriptors, all of which it takes over. 0 ok, -1 errno. */
static int start_child(struct command *cmd, const struct spawn_spec *sp, const struct spawn_fds *f, int *out_rd,
                       int *err_rd, struct child_err *ce)
{
    char *stack = malloc(CHILD_STACK);
    if (!stack) {
        close_spawn_fds(f);
        errno = ENOMEM;
        return -1;
    }
    set_nonblock(f->stdin_wr, 1);
    set_nonblock(f->out_rd, 1);
    if (f->err_rd >= 0) set_nonblock(f->err_rd, 1);
    pthread_mutex_lock(&cmd->stdin_mu);
    cmd->stdin_fd = f->stdin_wr;
    pthread_mutex_unlock(&cmd->stdin_mu);
    cmd->pty_fd = f->resize_fd;

    struct child_args a = { .sp = sp, .in_rd = f->child_in, .out_wr = f->child_out, .err_wr = f->child_err };
    a.err.stage = STAGE_OK;
    a.err.err = 0;
    uint64_t mark = reaper_mark();
    int64_t t0 = now_ms();
    pid_t pid = clone_child(&a, stack);
    int clone_errno = errno;
    free(stack); /* the child has exec'd or exited: it no longer uses the stack */
    close_child_ends(f);
    if (pid < 0) {
        cmd_stdin_close(cmd);
        close(f->out_rd);
        close_fd(f->err_rd);
        errno = clone_errno;
        return -1;
    }
    reaper_record_spawn(cmd, pid, t0, mark);
    ce->stage = a.err.stage;
    ce->err = a.err.err;
    *out_rd = f->out_rd;
    *err_rd = f->err_rd;
    return 0;
}

/* On a new pseudo-terminal the command's stdin, stdout and stderr are the terminal, whose master side
 * becomes the command's stdin (input, Ctrl-C) and its only output stream. */
static int spawn_on_terminal(struct command *cmd, const struct spawn_spec *sp, int *out_rd, int *err_rd,
                             struct child_err *ce)
{
    int master = posix_openpt(O_RDWR | O_NOCTTY | O_CLOEXEC);
    if (master < 0) return -1;
    char name[64];
    int slave = -1, in_dup = -1, resize_dup = -1;
    struct winsize ws = { .ws_row = sp->rows ? sp->rows : 24, .ws_col = sp->cols ? sp->cols : 80 };
    if (unlockpt(master) != 0 || ptsname_r(master, name, sizeof name) != 0) goto fail;
    slave = open(name, O_RDWR | O_NOCTTY | O_CLOEXEC);
    if (slave < 0 || ioctl(master, TIOCSWINSZ, &ws) != 0) goto fail;
    in_dup = fcntl(master, F_DUPFD_CLOEXEC, 3);
    resize_dup = fcntl(master, F_DUPFD_CLOEXEC, 3);
    if (in_dup < 0 || resize_dup < 0) goto fail;
    struct spawn_fds f = {
        .child_in = slave,
        .child_out = slave,
        .child_err = slave,
        .stdin_wr = in_dup,
        .out_rd = master,
        .err_rd = -1,
        .resize_fd = resize_dup,
    };
    return start_child(cmd, sp, &f, out_rd, err_rd, ce);
fail: {
    int e = errno;
    close_fd(slave);
    close_fd(in_dup);
    close_fd(resize_dup);
    close(master);
    errno = e;
    return -1;
}
}

static void close_pair(int p[2])
{
    close_fd(p[0]);
    close_fd(p[1]);
    p[0] = p[1] = -1;
}

/* Spawns with clone(CLONE_VM|CLONE_VFORK): under gVisor this costs half of a fork. */
int spawn_command(struct command *cmd, const struct spawn_spec *sp, int *out_rd, int *err_rd, struct child_err *ce)
{
    if (sp->pty) return spawn_on_terminal(cmd, sp, out_rd, err_rd, ce);
    int in[2] = { -1, -1 }, out[2] = { -1, -1 }, err[2] = { -1, -1 };
    if (pipe2(in, O_CLOEXEC) != 0 || pipe2(out, O_CLOEXEC) != 0 || pipe2(err, O_CLOEXEC) != 0) {
        int e = errno;
        close_pair(in);
        close_pair(out);
        close_pair(err);
        errno = e;
        return -1;
    }
    struct spawn_fds f = {
        .child_in = in[0],
        .child_out = out[1],
        .child_err = err[1],
        .stdin_wr = in[1],
        .out_rd = out[0],
        .err_rd = err[0],
        .resize_fd = -1,
    };
    return start_child(cmd, sp, &f, out_rd, err_rd, ce);
}
