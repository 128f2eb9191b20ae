/*  kv_netns.c: see kv_netns.h. */
#include "kv_netns.h"

#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

#include "kv_harness.h"

#define S_PREFIX "kvp" /* every name we create starts with it */

struct _kv_netns_t {
    int hosts;                                        /* host count */
    int subnet;                                       /* S in 10.200.S.0/24 */
    char hub[64];                                     /* the bridge's namespace */
    char root_link[16];                               /* our veth in the root namespace */
    int hub_made, root_made;                          /* what to remove */
    int made[KV_NETNS_MAX_HOSTS];                     /* host namespace exists */
    char names[KV_NETNS_MAX_HOSTS][64];               /* host namespaces */
    char addresses[KV_NETNS_MAX_HOSTS][20];           /* host addresses */
    char cut[KV_NETNS_MAX_HOSTS][KV_NETNS_MAX_HOSTS]; /* [from][to] dropped */
};

/* The path of a tool in the usual places (ctest's PATH may lack sbin),
 * into out; NULL when not found. */
static const char *s_tool(const char *name, char *out, size_t cap) {
    static const char *const dirs[] = {"/usr/sbin", "/sbin", "/usr/bin", "/bin"};
    for (size_t i = 0; i < sizeof(dirs) / sizeof(dirs[0]); i++) {
        snprintf(out, cap, "%s/%s", dirs[i], name);
        if (access(out, X_OK) == 0) return out;
    }
    return NULL;
}

/* Where ip is (found once; "ip" when nowhere, to fail visibly). */
static const char *s_ip(void) {
    static char path[64];
    if (!*path && !s_tool("ip", path, sizeof(path))) snprintf(path, sizeof(path), "ip");
    return path;
}

static const char *s_iptables(void) {
    static char path[64];
    if (!*path && !s_tool("iptables", path, sizeof(path))) snprintf(path, sizeof(path), "iptables");
    return path;
}

const char *kv_netns_unavailable(void) {
    if (geteuid() != 0) return "not root";
    char path[64];
    if (!s_tool("ip", path, sizeof(path))) return "ip (iproute2) not found";
    if (!s_tool("iptables", path, sizeof(path))) return "iptables not found";
    return "";
}

/* Runs argv (NULL-terminated, argv[0] a path), its output (stdout and
 * stderr) into output (cap bytes, NUL-terminated, cut when longer). Returns
 * its exit status (-1 when it could not run). */
static int s_capture(const char *const *argv, char *output, size_t cap) {
    int pipefd[2];
    if (pipe(pipefd) != 0) return -1;
    pid_t pid = fork();
    if (pid < 0) {
        close(pipefd[0]);
        close(pipefd[1]);
        return -1;
    }
    if (pid == 0) {
        dup2(pipefd[1], 1);
        dup2(pipefd[1], 2);
        close(pipefd[0]);
        close(pipefd[1]);
        execv(argv[0], (char *const *)argv);
        _exit(127);
    }
    close(pipefd[1]);
    size_t used = 0;
    ssize_t got;
    char sink[512] = {0};
    while ((got = read(pipefd[0], used + 1 < cap ? output + used : sink,
                       used + 1 < cap ? cap - 1 - used : sizeof(sink))) > 0)
        if (used + 1 < cap) used += (size_t)got;
    close(pipefd[0]);
    output[used] = '\0';
    int status = 0;
    while (waitpid(pid, &status, 0) < 0 && errno == EINTR) continue;
    return WIFEXITED(status) ? WEXITSTATUS(status) : -1;
}

/* Splits line (modified) into argv after ip's path. */
static void s_split(char *line, const char **argv, int max) {
    int argc = 0;
    argv[argc++] = s_ip();
    char *save = NULL;
    for (char *word = strtok_r(line, " ", &save); word && argc < max - 1;
         word = strtok_r(NULL, " ", &save))
        argv[argc++] = word;
    argv[argc] = NULL;
}

/* Runs ip with the arguments given as one line of space-separated words
 * (none of ours holds a space); prints the command and its output when it
 * fails. Returns its exit status. */
static int s_run(const char *format, ...) {
    char line[512], output[2048];
    va_list args;
    va_start(args, format);
    vsnprintf(line, sizeof(line), format, args);
    va_end(args);
    const char *argv[32];
    s_split(line, argv, 32);
    int rc = s_capture(argv, output, sizeof(output));
    if (rc != 0) {
        fprintf(stderr, "kv_netns: command failed (%d):", rc);
        for (int i = 0; argv[i]; i++) fprintf(stderr, " %s", argv[i]);
        fprintf(stderr, "\n%s", output);
    }
    return rc;
}

/* The pid in a name of ours ("kvp-PID-..." or "kvpPID"), or 0. */
static pid_t s_owner(const char *name) {
    if (strncmp(name, S_PREFIX, strlen(S_PREFIX)) != 0) return 0;
    const char *digits = name + strlen(S_PREFIX);
    if (*digits == '-') digits++;
    char *end = NULL;
    long pid = strtol(digits, &end, 10);
    if (end == digits || pid <= 0 || (*end != '-' && *end != '\0' && *end != '@')) return 0;
    return (pid_t)pid;
}

/* True when the process that made name no longer runs. */
static int s_stale(const char *name) {
    pid_t pid = s_owner(name);
    return pid > 0 && kill(pid, 0) != 0 && errno == ESRCH;
}

/* Runs ip with words (as s_run) and calls fn on each line of its output;
 * returns the sum of what fn returned. */
static int s_each_line(const char *words, int (*fn)(const char *line, void *arg), void *arg) {
    char line[256];
    snprintf(line, sizeof(line), "%s", words);
    const char *argv[32];
    s_split(line, argv, 32);
    size_t cap = 1 << 20;
    char *output = malloc(cap);
    if (!output) return 0;
    int count = 0;
    if (s_capture(argv, output, cap) == 0) {
        char *save = NULL;
        for (char *row = strtok_r(output, "\n", &save); row; row = strtok_r(NULL, "\n", &save))
            count += fn(row, arg);
    }
    free(output);
    return count;
}

/* "kvp-123-hub (id: 4)": the first word is the name. */
static int s_remove_stale_netns(const char *line, void *arg) {
    char name[128];
    if (sscanf(line, "%127s", name) != 1 || !s_stale(name)) return 0;
    return s_run("netns delete %s", name) == 0;
}

/* "12: kvp123@if3: <...": the second field, up to '@' or ':'. */
static int s_remove_stale_link(const char *line, void *arg) {
    const char *start = strchr(line, ' ');
    if (!start) return 0;
    char name[64];
    size_t len = strcspn(start + 1, "@: ");
    if (len == 0 || len >= sizeof(name)) return 0;
    memcpy(name, start + 1, len);
    name[len] = '\0';
    if (!s_stale(name)) return 0;
    return s_run("link delete %s", name) == 0;
}

int kv_netns_cleanup_stale(void) {
    int removed = s_each_line("netns list", s_remove_stale_netns, NULL);
    removed += s_each_line("-o link show", s_remove_stale_link, NULL);
    return removed;
}

/* 1 when line (of `ip -o -4 addr show`) holds an address in the subnet
 * prefix arg ("10.200.S."). */
static int s_subnet_used_line(const char *line, void *arg) {
    return strstr(line, (const char *)arg) != NULL;
}

/* 1 when some interface of the root namespace has an address in
 * 10.200.subnet.0/24 (another run's, or anyone's). */
static int s_subnet_taken(int subnet) {
    char prefix[32];
    snprintf(prefix, sizeof(prefix), " 10.200.%d.", subnet);
    return s_each_line("-o -4 addr show", s_subnet_used_line, prefix) > 0;
}

static int s_make_hub(kv_netns_t *self) {
    if (s_run("netns add %s", self->hub)) return -1;
    self->hub_made = 1;
    if (s_run("-n %s link set lo up", self->hub) ||
        s_run("-n %s link add br0 type bridge", self->hub) ||
        s_run("-n %s link set br0 up", self->hub))
        return -1;
    if (s_run("link add %s type veth peer name up0 netns %s", self->root_link, self->hub))
        return -1;
    self->root_made = 1;
    if (s_run("addr add 10.200.%d.1/24 dev %s", self->subnet, self->root_link) ||
        s_run("link set %s up", self->root_link) ||
        s_run("-n %s link set up0 master br0 up", self->hub))
        return -1;
    return 0;
}

static int s_make_host(kv_netns_t *self, int i) {
    const char *name = self->names[i];
    if (s_run("netns add %s", name)) return -1;
    self->made[i] = 1;
    if (s_run("-n %s link add h%d type veth peer name eth0 netns %s", self->hub, i, name) ||
        s_run("-n %s link set h%d master br0 up", self->hub, i) ||
        s_run("-n %s addr add %s/24 dev eth0", name, self->addresses[i]) ||
        s_run("-n %s link set eth0 up", name) || s_run("-n %s link set lo up", name))
        return -1;
    return 0;
}

kv_netns_t *kv_netns_new(int hosts) {
    if (hosts < 1 || hosts > KV_NETNS_MAX_HOSTS || *kv_netns_unavailable()) return NULL;
    kv_netns_cleanup_stale();
    kv_netns_t *self = calloc(1, sizeof(*self));
    if (!self) return NULL;
    int pid = (int)getpid();
    self->hosts = hosts;
    self->subnet = 1 + pid % 250;
    for (int tries = 0; tries < 250 && s_subnet_taken(self->subnet); tries++)
        self->subnet = 1 + self->subnet % 250;
    snprintf(self->hub, sizeof(self->hub), S_PREFIX "-%d-hub", pid);
    snprintf(self->root_link, sizeof(self->root_link), S_PREFIX "%d", pid);
    int failed = s_make_hub(self);
    for (int i = 0; i < hosts && !failed; i++) {
        snprintf(self->names[i], sizeof(self->names[i]), S_PREFIX "-%d-%d", pid, i);
        snprintf(self->addresses[i], sizeof(self->addresses[i]), "10.200.%d.%d", self->subnet,
                 10 + i);
        failed = s_make_host(self, i);
    }
    if (failed) kv_netns_destroy(&self);
    return self;
}

void kv_netns_destroy(kv_netns_t **self_p) {
    if (!self_p || !*self_p) return;
    kv_netns_t *self = *self_p;
    /* The root veth first: removing a namespace removes its interfaces
     * later, in the background, and a delete racing with that fails.
     * Deleting one end of a veth pair removes the other. */
    if (self->root_made) s_run("link delete %s", self->root_link);
    for (int i = 0; i < self->hosts; i++)
        if (self->made[i]) s_run("netns delete %s", self->names[i]);
    if (self->hub_made) s_run("netns delete %s", self->hub);
    free(self);
    *self_p = NULL;
}

const char *kv_netns_name(const kv_netns_t *self, int host) {
    return self->names[host];
}

const char *kv_netns_address(const kv_netns_t *self, int host) {
    return self->addresses[host];
}

pid_t kv_netns_spawn(const kv_netns_t *self, int host, const char *const *argv, const char *log) {
    const char *full[128] = {s_ip(), "netns", "exec", self->names[host]};
    int argc = 4;
    for (int i = 0; argv[i] && argc < 127; i++) full[argc++] = argv[i];
    full[argc] = NULL;
    return kv_spawn(full, log);
}

/* Adds (-I) or deletes (-D) the rule dropping from's packets in to. */
static int s_rule(kv_netns_t *self, int from, int to, const char *action) {
    return s_run("netns exec %s %s -w %s INPUT -s %s -j DROP", self->names[to], s_iptables(),
                 action, self->addresses[from]);
}

static int s_valid(const kv_netns_t *self, int from, int to) {
    return from >= 0 && to >= 0 && from < self->hosts && to < self->hosts && from != to;
}

int kv_netns_cut(kv_netns_t *self, int from, int to) {
    if (!s_valid(self, from, to)) return -1;
    if (self->cut[from][to]) return 0;
    if (s_rule(self, from, to, "-I")) return -1;
    self->cut[from][to] = 1;
    return 0;
}

int kv_netns_heal(kv_netns_t *self, int from, int to) {
    if (!s_valid(self, from, to)) return -1;
    if (!self->cut[from][to]) return 0;
    if (s_rule(self, from, to, "-D")) return -1;
    self->cut[from][to] = 0;
    return 0;
}

int kv_netns_cut_both(kv_netns_t *self, int a, int b) {
    return kv_netns_cut(self, a, b) | kv_netns_cut(self, b, a);
}

int kv_netns_heal_both(kv_netns_t *self, int a, int b) {
    return kv_netns_heal(self, a, b) | kv_netns_heal(self, b, a);
}

int kv_netns_heal_all(kv_netns_t *self) {
    int failed = 0;
    for (int from = 0; from < self->hosts; from++)
        for (int to = 0; to < self->hosts; to++)
            if (self->cut[from][to]) failed += kv_netns_heal(self, from, to) != 0;
    return failed;
}

int kv_netns_is_cut(const kv_netns_t *self, int from, int to) {
    return s_valid(self, from, to) && self->cut[from][to];
}
