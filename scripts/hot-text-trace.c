/* Single-steps a command and the processes it starts (ptrace), and writes every
 * distinct instruction address executed in a binary under DIR as "<exe> <address>"
 * lines to OUT (appending). Processes of other binaries (iptables, nft, ...) run
 * untraced. Used by scripts/hot-text.sh; exact where a sampling profiler is not, and
 * unlike valgrind it sees the vDSO set-up, the posix_spawn child before exec and the
 * CPU-specific string functions the machine really runs.
 *
 *   hot-text-trace DIR OUT command [args...]
 */
#define _GNU_SOURCE
#include <errno.h>
#include <limits.h>
#include <signal.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ptrace.h>
#include <sys/user.h>
#include <sys/wait.h>
#include <unistd.h>

#define MAX_EXES 8

struct set {
    char exe[PATH_MAX];
    uint64_t *slot;
    size_t cap, len;
};

static struct set sets[MAX_EXES];
static int nsets;
static const char *dir;

static void add(struct set *s, uint64_t a)
{
    if (2 * (s->len + 1) > s->cap) {
        size_t cap = s->cap ? 2 * s->cap : 1 << 16;
        uint64_t *n = calloc(cap, sizeof *n);
        if (!n) {
            perror("calloc");
            exit(1);
        }
        for (size_t i = 0; i < s->cap; i++)
            if (s->slot[i])
                for (size_t j = (s->slot[i] * 0x9e3779b97f4a7c15ULL) & (cap - 1);; j = (j + 1) & (cap - 1))
                    if (!n[j]) {
                        n[j] = s->slot[i];
                        break;
                    }
        free(s->slot);
        s->slot = n;
        s->cap = cap;
    }
    for (size_t j = (a * 0x9e3779b97f4a7c15ULL) & (s->cap - 1);; j = (j + 1) & (s->cap - 1)) {
        if (s->slot[j] == a)
            return;
        if (!s->slot[j]) {
            s->slot[j] = a;
            s->len++;
            return;
        }
    }
}

/* The set of the traced binary pid runs, or NULL when it is not one under DIR. */
static struct set *set_of(pid_t pid)
{
    char link[64], exe[PATH_MAX];
    snprintf(link, sizeof link, "/proc/%d/exe", pid);
    ssize_t n = readlink(link, exe, sizeof exe - 1);
    if (n < 0)
        return NULL;
    exe[n] = 0;
    size_t d = strlen(dir);
    if (strncmp(exe, dir, d) != 0 || exe[d] != '/')
        return NULL;
    for (int i = 0; i < nsets; i++)
        if (!strcmp(sets[i].exe, exe))
            return &sets[i];
    if (nsets == MAX_EXES)
        return NULL;
    strcpy(sets[nsets].exe, exe);
    return &sets[nsets++];
}

#define MAX_PIDS 256
static struct {
    pid_t pid;
    struct set *set;
} procs[MAX_PIDS];

static int find(pid_t pid)
{
    for (int i = 0; i < MAX_PIDS; i++)
        if (procs[i].pid == pid)
            return i;
    for (int i = 0; i < MAX_PIDS; i++)
        if (!procs[i].pid) {
            procs[i].pid = pid;
            procs[i].set = set_of(pid);
            return i;
        }
    fprintf(stderr, "hot-text-trace: too many processes\n");
    exit(1);
}

int main(int argc, char **argv)
{
    if (argc < 4) {
        fprintf(stderr, "usage: hot-text-trace DIR OUT command [args...]\n");
        return 2;
    }
    dir = argv[1];
    pid_t child = fork();
    if (child == 0) {
        ptrace(PTRACE_TRACEME, 0, 0, 0);
        raise(SIGSTOP);
        execvp(argv[3], argv + 3);
        _exit(127);
    }
    int status, code = 1;
    waitpid(child, &status, 0);
    ptrace(PTRACE_SETOPTIONS, child, 0,
           PTRACE_O_TRACEFORK | PTRACE_O_TRACEVFORK | PTRACE_O_TRACECLONE |
               PTRACE_O_TRACEEXEC | PTRACE_O_EXITKILL);
    ptrace(PTRACE_CONT, child, 0, 0);
    for (;;) {
        pid_t pid = waitpid(-1, &status, __WALL);
        if (pid < 0) {
            if (errno == EINTR)
                continue;
            break;
        }
        int i = find(pid);
        if (WIFEXITED(status) || WIFSIGNALED(status)) {
            if (pid == child)
                code = WIFEXITED(status) ? WEXITSTATUS(status) : 128 + WTERMSIG(status);
            procs[i].pid = 0;
            continue;
        }
        int sig = WSTOPSIG(status), event = status >> 16, deliver = 0;
        if (event == PTRACE_EVENT_EXEC) {
            procs[i].set = set_of(pid);
            if (!procs[i].set) {
                ptrace(PTRACE_DETACH, pid, 0, 0);
                procs[i].pid = 0;
                continue;
            }
        } else if (event == 0 && sig != SIGTRAP && sig != SIGSTOP) {
            deliver = sig;
        }
        if (procs[i].set) {
            struct user_regs_struct regs;
            if (ptrace(PTRACE_GETREGS, pid, 0, &regs) == 0)
                add(procs[i].set, regs.rip);
            ptrace(PTRACE_SINGLESTEP, pid, 0, deliver);
        } else {
            ptrace(PTRACE_CONT, pid, 0, deliver);
        }
    }
    FILE *out = fopen(argv[2], "a");
    if (!out) {
        perror(argv[2]);
        return 1;
    }
    for (int s = 0; s < nsets; s++)
        for (size_t j = 0; j < sets[s].cap; j++)
            if (sets[s].slot[j])
                fprintf(out, "%s %#llx\n", sets[s].exe, (unsigned long long)sets[s].slot[j]);
    fclose(out);
    return code;
}
