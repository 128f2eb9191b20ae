/*  kv_netns.h: network namespaces for partition tests.
 *
 *  kv_netns_new creates N "hosts", each a network namespace with one
 *  interface (eth0, 10.200.S.(10+i)/24) on a Linux bridge. The bridge lives
 *  in a namespace of its own (the hub), so the bridged traffic never meets
 *  the root namespace's firewall (Docker's FORWARD policy is DROP, and
 *  br_netfilter would apply it). The test process stays in the root
 *  namespace, linked to the hub by one veth pair with 10.200.S.1: it reaches
 *  every host, and nothing ever cuts it off.
 *
 *  A cut drops the packets from one host to another in the receiver's
 *  namespace (iptables INPUT, so the sender sees a silent network, not an
 *  error); a cut both ways is two cuts. One-way cuts leave the other
 *  direction flowing: over TCP the receiver of a one-way cut still gets the
 *  data sent to it, while its acknowledgements and answers are lost.
 *
 *  Every name carries the creating process id (namespaces "kvp-PID-...",
 *  the root veth "kvpPID"); kv_netns_new first removes what processes that
 *  no longer run left behind (a crashed run), and never touches anything
 *  else. Needs root, ip (iproute2) and iptables.
 */
#ifndef KV_NETNS_H
#define KV_NETNS_H

#include <stddef.h>
#include <sys/types.h>

#define KV_NETNS_MAX_HOSTS 32

typedef struct _kv_netns_t kv_netns_t;

/* Empty when this process can build namespaces (root, ip and iptables
 * found); else the reason, for a skip message. */
const char *kv_netns_unavailable(void);

/* Removes the namespaces and the root veth left by runs whose process is
 * gone. Returns how many objects were removed. */
int kv_netns_cleanup_stale(void);

/* Creates hosts hosts on a fresh bridge. NULL on failure (what was built
 * is removed; the failing command is printed). */
kv_netns_t *kv_netns_new(int hosts);

/* Removes every namespace and interface of self (processes still inside
 * a host lose their network); sets *self_p to NULL. Safe on NULL. */
void kv_netns_destroy(kv_netns_t **self_p);

/* The namespace name of host i ("kvp-PID-i"). */
const char *kv_netns_name(const kv_netns_t *self, int host);

/* The IPv4 address of host i, as text. */
const char *kv_netns_address(const kv_netns_t *self, int host);

/* Starts argv (argv[0] a path) inside host i, output appended to log; the
 * child dies with the test process. Returns the pid (the program's own:
 * `ip netns exec` execs it), or -1. */
pid_t kv_netns_spawn(const kv_netns_t *self, int host, const char *const *argv, const char *log);

/* Drops the packets from host from to host to (one way). 0 on success;
 * cutting a cut link is a no-op. */
int kv_netns_cut(kv_netns_t *self, int from, int to);

/* Lets the packets from host from to host to flow again. */
int kv_netns_heal(kv_netns_t *self, int from, int to);

/* Both directions between a and b. */
int kv_netns_cut_both(kv_netns_t *self, int a, int b);
int kv_netns_heal_both(kv_netns_t *self, int a, int b);

/* Heals every cut. Returns the number of commands that failed. */
int kv_netns_heal_all(kv_netns_t *self);

/* 1 when the packets from host from to host to are dropped. */
int kv_netns_is_cut(const kv_netns_t *self, int from, int to);

#endif
