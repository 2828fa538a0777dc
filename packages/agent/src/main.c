/* sandpit-agent entry point: configuration, and the PID 1 supervisor that keeps the server alive. */
#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <arpa/inet.h>
#include <sched.h>
#include <sys/mount.h>
#include <sys/prctl.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "process-guard.h"
#include "server.h"
#include "util.h"

#define TOKEN_MAX 256

/* Reads the token from `file` and unlinks it: once the agent listens, no process of the sandbox can
 * find it in a file. Returns the token's length, or -1. */
static int take_token_file(const char *file, char *buf, size_t size)
{
    int fd = open(file, O_RDONLY | O_CLOEXEC | O_NOFOLLOW);
    if (fd < 0) {
        logmsg("cannot open token file %s: %s", file, strerror(errno));
        return -1;
    }
    size_t len = 0;
    for (;;) {
        ssize_t r = read(fd, buf + len, size - 1 - len);
        if (r < 0 && errno == EINTR) continue;
        if (r <= 0) break;
        len += (size_t)r;
        if (len == size - 1) break;
    }
    close(fd);
    if (unlink(file) != 0) {
        logmsg("cannot remove token file %s: %s", file, strerror(errno));
        return -1;
    }
    while (len > 0 && (buf[len - 1] == '\n' || buf[len - 1] == '\r')) len--;
    buf[len] = 0;
    return (int)len;
}

/* Overwrites the value of every SANDPIT_AGENT_TOKEN* variable where the kernel shows it: clearenv()
 * only drops pointers, while /proc/<pid>/environ reads the original strings from our memory. */
static void scrub_token_env(void)
{
    extern char **environ;
    for (char **e = environ; e && *e; e++) {
        if (strncmp(*e, "SANDPIT_AGENT_TOKEN", 19) != 0) continue;
        char *eq = strchr(*e, '=');
        if (eq) memset(eq + 1, 0, strlen(eq + 1));
    }
}

static int load_config(void)
{
    const char *listen = getenv("SANDPIT_AGENT_LISTEN");
    const char *token = getenv("SANDPIT_AGENT_TOKEN");
    const char *token_file = getenv("SANDPIT_AGENT_TOKEN_FILE");
    static char file_token[TOKEN_MAX];
    const char *allow = getenv("SANDPIT_AGENT_ALLOW");
    const char *run_dir = getenv("SANDPIT_AGENT_RUN_DIR");

    if (!listen || !*listen) listen = "0.0.0.0:49982";
    const char *colon = strrchr(listen, ':');
    if (!colon || (size_t)(colon - listen) >= sizeof g_cfg.listen_ip) {
        logmsg("invalid SANDPIT_AGENT_LISTEN '%s' (want ip:port)", listen);
        return -1;
    }
    memcpy(g_cfg.listen_ip, listen, (size_t)(colon - listen));
    g_cfg.listen_ip[colon - listen] = 0;
    uint64_t port;
    struct in_addr tmp;
    if (parse_u64(colon + 1, &port) != 0 || port == 0 || port > 65535 ||
        inet_pton(AF_INET, g_cfg.listen_ip, &tmp) != 1) {
        logmsg("invalid SANDPIT_AGENT_LISTEN '%s' (want ipv4:port)", listen);
        return -1;
    }
    g_cfg.port = (int)port;

    if (token_file && *token_file) {
        int n = take_token_file(token_file, file_token, sizeof file_token);
        if (n <= 0) {
            logmsg("token file %s is empty or unreadable", token_file);
            return -1;
        }
        token = file_token;
    }
    if (token && *token) {
        g_cfg.token = strdup(token);
        if (!g_cfg.token) return -1;
        g_cfg.token_len = strlen(token);
        explicit_bzero(file_token, sizeof file_token);
    }

    if (allow && strcmp(allow, "remote") == 0) {
        /* Survives a restore into another network identity (snapshots, forks): no address to match. */
        g_cfg.allow_remote = 1;
    } else if (allow && *allow) {
        char *copy = strdup(allow);
        if (!copy) return -1;
        char *save = NULL;
        for (char *t = strtok_r(copy, ", ", &save); t; t = strtok_r(NULL, ", ", &save)) {
            struct in_addr a;
            if (inet_pton(AF_INET, t, &a) != 1) {
                logmsg("invalid address '%s' in SANDPIT_AGENT_ALLOW", t);
                free(copy);
                return -1;
            }
            if (g_cfg.nallow == AGENT_MAX_ALLOW) {
                logmsg("SANDPIT_AGENT_ALLOW: too many addresses");
                free(copy);
                return -1;
            }
            g_cfg.allow[g_cfg.nallow++] = a.s_addr;
        }
        free(copy);
        if (g_cfg.nallow == 0) {
            logmsg("SANDPIT_AGENT_ALLOW is empty");
            return -1;
        }
    }

    if (!run_dir || !*run_dir) run_dir = "/run/sandpit-agent";
    if (run_dir[0] != '/' || strlen(run_dir) >= sizeof g_cfg.run_dir - AGENT_ID_MAX - 16) {
        logmsg("invalid SANDPIT_AGENT_RUN_DIR '%s'", run_dir);
        return -1;
    }
    snprintf(g_cfg.run_dir, sizeof g_cfg.run_dir, "%s", run_dir);
    return 0;
}

static void on_term(int sig)
{
    (void)sig;
    _exit(0); /* PID 1 exiting stops the sandbox */
}

/* Reaps every child; returns when `pid` has exited (0) or there is no child left (-1). */
static int reap_until(pid_t pid, const char *what)
{
    for (;;) {
        int st;
        pid_t w = waitpid(-1, &st, 0);
        if (w == pid) {
            if (WIFSIGNALED(st)) logmsg("%s %d killed by signal %d, restarting", what, (int)pid, WTERMSIG(st));
            else logmsg("%s %d exited with %d, restarting", what, (int)pid, WEXITSTATUS(st));
            return 0;
        }
        if (w < 0 && errno == ECHILD) return -1;
    }
}

/* Drops CAP_SYS_ADMIN for good (bounding set, then effective, permitted and inheritable): only the
 * guest init needs it, to mount its /proc; neither the server nor any command gets it. */
#define CAP_SYS_ADMIN 21
#define CAP_VERSION_3 0x20080522 /* <linux/capability.h>, which musl does not ship */
struct cap_header {
    uint32_t version;
    int pid;
};
struct cap_data {
    uint32_t effective, permitted, inheritable;
};

static int drop_sys_admin(void)
{
    if (prctl(PR_CAPBSET_DROP, CAP_SYS_ADMIN, 0, 0, 0) != 0) return -1;
    struct cap_header hdr = { CAP_VERSION_3, 0 };
    struct cap_data data[2];
    if (syscall(SYS_capget, &hdr, data) != 0) return -1;
    for (int i = 0; i < 2; i++) {
        uint32_t bit = CAP_SYS_ADMIN / 32 == i ? UINT32_C(1) << (CAP_SYS_ADMIN % 32) : 0;
        data[i].effective &= ~bit;
        data[i].permitted &= ~bit;
        data[i].inheritable &= ~bit;
    }
    return (int)syscall(SYS_capset, &hdr, data);
}

/*
 * PID 1 of the guest's own PID namespace: everything a user can see or signal lives in that namespace,
 * so `kill -9 1` from a command ends this process (and every process of the namespace) but not the
 * sandbox's real PID 1, which starts a new one. It mounts the namespace's /proc, then forks the server,
 * reaps orphans and restarts the server when it exits.
 */
static void guest_init(int lfd) __attribute__((noreturn));
static void guest_init(int lfd)
{
    if (mount(NULL, "/", NULL, MS_REC | MS_PRIVATE, NULL) != 0 ||
        mount("proc", "/proc", "proc", MS_NOSUID | MS_NODEV | MS_NOEXEC, NULL) != 0) {
        logmsg("cannot mount the guest's /proc: %s", strerror(errno));
        _exit(1);
    }
    guard_setup(g_cfg.run_dir);
    if (drop_sys_admin() != 0) {
        logmsg("cannot drop CAP_SYS_ADMIN: %s", strerror(errno));
        _exit(1);
    }
    for (;;) {
        pid_t pid = fork();
        if (pid == 0) server_main(lfd);
        if (pid < 0) {
            logmsg("fork: %s", strerror(errno));
            sleep_ms(1000);
            continue;
        }
        reap_until(pid, "server");
        sleep_ms(50);
    }
}

/*
 * The sandbox's PID 1: starts the guest init in a new PID and mount namespace, and starts a new one
 * whenever it ends. No process of the sandbox can see or signal this process.
 */
static void supervise(void) __attribute__((noreturn));
static void supervise(void)
{
    struct sigaction sa;
    memset(&sa, 0, sizeof sa);
    sa.sa_handler = on_term;
    sigaction(SIGTERM, &sa, NULL);
    sigaction(SIGINT, &sa, NULL);

    /* bound once here, so that connections queue up in the backlog while the server restarts */
    int lfd = server_listen();
    if (lfd < 0) logmsg("listen %s:%d: %s (the server will retry)", g_cfg.listen_ip, g_cfg.port, strerror(errno));
    g_cfg.supervised = 1;
    for (;;) {
        /* fork() cannot make the child PID 1 of a new namespace; the raw clone does, with fork's semantics */
        pid_t pid = (pid_t)syscall(SYS_clone, CLONE_NEWPID | CLONE_NEWNS | SIGCHLD, 0, 0, 0, 0);
        if (pid == 0) {
            sa.sa_handler = SIG_DFL;
            sigaction(SIGTERM, &sa, NULL);
            sigaction(SIGINT, &sa, NULL);
            guest_init(lfd);
        }
        if (pid < 0) {
            logmsg("clone of the guest init: %s", strerror(errno));
            sleep_ms(1000);
            continue;
        }
        reap_until(pid, "guest init");
        sleep_ms(50);
    }
}

int main(int argc, char **argv)
{
    if (argc > 1 && strcmp(argv[1], "--version") == 0) {
        printf("sandpit-agent %s\n", AGENT_VERSION);
        return 0;
    }
    /* fds 0-2 must exist so that pipes never land on them */
    for (;;) {
        int fd = open("/dev/null", O_RDWR | O_CLOEXEC);
        if (fd < 0) break;
        if (fd > 2) {
            close(fd);
            break;
        }
        fcntl(fd, F_SETFD, 0);
    }
    /* Not dumpable: no process of the sandbox (root included: commands have no CAP_SYS_PTRACE) can read
     * our memory, environment or fds through /proc or ptrace. exec resets it for the commands. */
    prctl(PR_SET_DUMPABLE, 0, 0, 0, 0);
    int rc = load_config();
    scrub_token_env();
    if (rc != 0) return 2;
    clearenv(); /* nothing of the agent's environment reaches commands */
    if (getpid() == 1) supervise();
    server_main(-1);
}
