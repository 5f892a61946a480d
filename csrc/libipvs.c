/*
 * libipvs.c - the public C API: locking, namespaces, backend choice, and
 * dispatch to the netlink (nl_*) or sockopt (so_*) transport (transport.h).
 * The top of the C layer: it calls the transports and handle.c, nothing
 * calls it back (the handle's error message and hooks are in handle.c).
 */
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <net/if.h>
#include <sched.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/stat.h>
#include <unistd.h>

#include "alloc.h"
#include "transport.h"

/* Enter netns_fd (if >= 0), remembering the thread's own namespace in *saved. */
static int enter_netns(int netns_fd, int *saved)
{
    *saved = -1;
    if (netns_fd < 0)
        return 0;
    int self = open("/proc/thread-self/ns/net", O_RDONLY | O_CLOEXEC);
    if (self < 0)
        return -errno;
    if (setns(netns_fd, CLONE_NEWNET) < 0) {
        int e = errno;
        close(self);
        return -e;
    }
    *saved = self;
    return 0;
}

static int leave_netns(int saved)
{
    if (saved < 0)
        return 0;
    int rc = setns(saved, CLONE_NEWNET) < 0 ? -ENOTRECOVERABLE : 0;
    close(saved);
    return rc;
}

static int open_transport(ipvs_handle *h, int backend)
{
    int rc;
    if (backend == IPVS_BACKEND_SOCKOPT) {
        h->backend = IPVS_BACKEND_SOCKOPT;
        return so_open(h);
    }
    h->backend = IPVS_BACKEND_NETLINK;
    rc = nl_open(h);
    if (rc == -ENOENT && backend == IPVS_BACKEND_AUTO) {
        /* no "IPVS" genetlink family: try the legacy interface */
        char msg[IPVS_ERRMSG_MAX];
        memcpy(msg, h->errmsg, sizeof(msg));
        if (h->fd >= 0) {       /* so_open makes its own socket: no leak */
            nl_close(h);
            close(h->fd);
            h->fd = -1;
        }
        h->backend = IPVS_BACKEND_SOCKOPT;
        rc = so_open(h);
        if (rc < 0) {
            /* neither interface: report netlink's verdict (IPVS missing) */
            h->backend = IPVS_BACKEND_NETLINK;
            memcpy(h->errmsg, msg, sizeof(msg));
            rc = -ENOENT;
        }
    }
    return rc;
}

/*
 * fork safety. A handle inherited by a child process over fork() must not
 * share the parent's socket: both would read each other's replies. Done here
 * in C, below every caller (Python, threads, signal handlers alike): a
 * pthread_atfork child handler bumps ipvs_fork_gen (no syscall on the hot
 * path, unlike comparing getpid() on every call); a handle whose fork_gen is
 * behind, used in the child, first drops its copy of the parent's socket
 * (closing the child's descriptor only: the parent's socket stays open and
 * untouched) and opens its own in the namespace it was opened in
 * (home_ns_fd). Its lock is initialised afresh: a parent thread that held it
 * at fork time does not exist in the child. Child threads racing to be first
 * are serialised by fork_lock.
 */
static unsigned long ipvs_fork_gen;
static pthread_once_t atfork_once = PTHREAD_ONCE_INIT;
static pthread_mutex_t fork_lock = PTHREAD_MUTEX_INITIALIZER;

static void after_fork_in_child(void)
{
    __atomic_add_fetch(&ipvs_fork_gen, 1, __ATOMIC_RELAXED);
    pthread_mutex_init(&fork_lock, NULL);
}

static void atfork_register(void)
{
    (void)pthread_atfork(NULL, NULL, after_fork_in_child);
}

static int init_lock(ipvs_handle *h)
{
    /* error-checking: a signal handler that calls the same handle while the
     * interrupted call holds the lock gets EDEADLK instead of hanging */
    pthread_mutexattr_t ma;
    int rc;
    pthread_mutexattr_init(&ma);
    pthread_mutexattr_settype(&ma, PTHREAD_MUTEX_ERRORCHECK);
    rc = pthread_mutex_init(&h->lock, &ma);
    pthread_mutexattr_destroy(&ma);
    return rc;
}

/* Same network namespace? (compared by the nsfs inode) */
static int same_ns(int a_fd, const char *b_path)
{
    struct stat a, b;
    if (fstat(a_fd, &a) < 0 || stat(b_path, &b) < 0)
        return 0;
    return a.st_dev == b.st_dev && a.st_ino == b.st_ino;
}

/* In a child process: a socket of its own, in the handle's namespace. */
static int reopen_after_fork(ipvs_handle *h)
{
    int rc, rc2, saved = -1;
    if (h->fd >= 0) {
        close(h->fd);            /* the child's descriptor only */
        h->fd = -1;
    }
    h->rx_pending = 0;           /* a datagram of the parent's, never ours */
    if (h->home_ns_fd >= 0 && !same_ns(h->home_ns_fd, "/proc/thread-self/ns/net")) {
        rc = enter_netns(h->home_ns_fd, &saved);
        if (rc < 0)
            return rc;
    }
    rc = open_transport(h, h->backend);
    rc2 = leave_netns(saved);
    if (rc2 < 0)
        rc = rc2;
    if (rc < 0 && h->fd >= 0) {
        close(h->fd);
        h->fd = -1;
    }
    return rc;
}

/* Lock h; in a child process first make the handle its own. */
static int lock_handle(ipvs_handle *h)
{
    if (__atomic_load_n(&ipvs_fork_gen, __ATOMIC_RELAXED) != h->fork_gen) {
        int rc = 0;
        pthread_mutex_lock(&fork_lock);
        unsigned long gen = __atomic_load_n(&ipvs_fork_gen, __ATOMIC_RELAXED);
        if (gen != h->fork_gen) {
            /* no thread of this process has locked h yet (every locker
             * comes through here first): initialising it afresh is safe */
            pthread_mutex_destroy(&h->lock);
            if (init_lock(h) != 0)
                rc = -ENOMEM;
            else {
                /* on failure fork_gen stays behind: the next call tries again */
                rc = reopen_after_fork(h);
                if (rc >= 0)
                    h->fork_gen = gen;
            }
        }
        pthread_mutex_unlock(&fork_lock);
        if (rc < 0)
            return rc;
    }
    if (pthread_mutex_lock(&h->lock) != 0)
        return -EDEADLK;
    return 0;
}

static __thread char open_errmsg[IPVS_ERRMSG_MAX];

const char *ipvs_open_errmsg(void) { return open_errmsg; }

int ipvs_open(ipvs_handle **out, int backend, int netns_fd, int timeout_ms)
{
    int rc, saved, rc2;
    ipvs_handle *h;

    *out = NULL;
    open_errmsg[0] = '\0';
    if (backend < IPVS_BACKEND_AUTO || backend > IPVS_BACKEND_SOCKOPT)
        return -EINVAL;
    h = ipvs_calloc(1, sizeof(*h));
    if (!h)
        return -ENOMEM;
    h->fd = -1;
    h->netns_fd = -1;
    h->home_ns_fd = -1;
    h->timeout_ms = timeout_ms;
    pthread_once(&atfork_once, atfork_register);
    h->fork_gen = __atomic_load_n(&ipvs_fork_gen, __ATOMIC_RELAXED);
    if (init_lock(h) != 0) {
        ipvs_xfree(h);
        return -ENOMEM;
    }
    if (netns_fd >= 0) {
        h->netns_fd = fcntl(netns_fd, F_DUPFD_CLOEXEC, 0);
        if (h->netns_fd < 0) {
            rc = -errno;
            goto fail;
        }
        h->home_ns_fd = fcntl(netns_fd, F_DUPFD_CLOEXEC, 0);
    } else {
        h->home_ns_fd = open("/proc/thread-self/ns/net", O_RDONLY | O_CLOEXEC);
    }
    if (h->home_ns_fd < 0) {
        rc = -errno;
        goto fail;
    }
    rc = enter_netns(h->netns_fd, &saved);
    if (rc < 0)
        goto fail;
    rc = open_transport(h, backend);
    rc2 = leave_netns(saved);
    if (rc2 < 0)
        rc = rc2;
    if (rc < 0)
        goto fail;
    *out = h;
    return 0;
fail:
    memcpy(open_errmsg, h->errmsg, sizeof(open_errmsg));
    ipvs_close(h);
    return rc;
}

void ipvs_close(ipvs_handle *h)
{
    if (!h)
        return;
    if (h->fd >= 0) {
        if (h->backend == IPVS_BACKEND_SOCKOPT)
            so_close(h);
        else
            nl_close(h);
    }
    if (h->fd >= 0)
        close(h->fd);
    if (h->netns_fd >= 0)
        close(h->netns_fd);
    if (h->home_ns_fd >= 0)
        close(h->home_ns_fd);
    ipvs_xfree(h->rxbuf);
    ipvs_xfree(h->txbuf);
    pthread_mutex_destroy(&h->lock);
    ipvs_xfree(h);
}

int ipvs_backend(const ipvs_handle *h) { return h->backend; }
int ipvs_fd(const ipvs_handle *h) { return h->fd; }

int ipvs_set_interrupt_check(ipvs_handle *h, int (*cb)(void *arg), void *arg)
{
    int rc = lock_handle(h);
    if (rc < 0)
        return rc;
    h->intr_cb = cb;
    h->intr_arg = arg;
    pthread_mutex_unlock(&h->lock);
    return 0;
}

int ipvs_set_timeout(ipvs_handle *h, int timeout_ms)
{
    int rc = lock_handle(h);
    if (rc < 0)
        return rc;
    h->timeout_ms = timeout_ms;
    pthread_mutex_unlock(&h->lock);
    return 0;
}

int ipvs_link_up(ipvs_handle *h, const char *ifname)
{
    struct ifreq ifr;
    int rc = lock_handle(h);
    if (rc < 0)
        return rc;
    memset(&ifr, 0, sizeof(ifr));
    snprintf(ifr.ifr_name, sizeof(ifr.ifr_name), "%s", ifname);
    /* the socket's own namespace answers: no setns needed */
    if (h->fd < 0)
        rc = -EBADF;
    else if (ioctl(h->fd, SIOCGIFFLAGS, &ifr) < 0)
        rc = -errno;
    else
        rc = (ifr.ifr_flags & IFF_UP) ? 1 : 0;
    pthread_mutex_unlock(&h->lock);
    return rc;
}

void ipvs_free(void *p) { ipvs_xfree(p); }

/* Lock, clear the message, call the transport's function, unlock. */
#define DISPATCH(name, ...)                                        \
    do {                                                           \
        int rc_ = lock_handle(h);                                  \
        if (rc_ < 0)                                               \
            return rc_;                                            \
        h->errmsg[0] = '\0';                                       \
        if (h->fd < 0)                                             \
            rc_ = -EBADF;                                          \
        else if (h->backend == IPVS_BACKEND_SOCKOPT)               \
            rc_ = so_##name(h, ##__VA_ARGS__);                     \
        else                                                       \
            rc_ = nl_##name(h, ##__VA_ARGS__);                     \
        pthread_mutex_unlock(&h->lock);                            \
        return rc_;                                                \
    } while (0)

int ipvs_get_info(ipvs_handle *h, struct ipvs_info *out) { DISPATCH(get_info, out); }
int ipvs_add_service(ipvs_handle *h, const struct ipvs_service *s) { DISPATCH(add_service, s); }
int ipvs_update_service(ipvs_handle *h, const struct ipvs_service *s) { DISPATCH(update_service, s); }
int ipvs_del_service(ipvs_handle *h, const struct ipvs_service *s) { DISPATCH(del_service, s); }
int ipvs_get_service(ipvs_handle *h, const struct ipvs_service *k, struct ipvs_service *out)
{ DISPATCH(get_service, k, out); }
int ipvs_get_services(ipvs_handle *h, struct ipvs_service **out, size_t *n)
{ DISPATCH(get_services, out, n); }
int ipvs_add_dest(ipvs_handle *h, const struct ipvs_service *s, const struct ipvs_dest *d)
{ DISPATCH(add_dest, s, d); }
int ipvs_update_dest(ipvs_handle *h, const struct ipvs_service *s, const struct ipvs_dest *d)
{ DISPATCH(update_dest, s, d); }
int ipvs_del_dest(ipvs_handle *h, const struct ipvs_service *s, const struct ipvs_dest *d)
{ DISPATCH(del_dest, s, d); }
int ipvs_get_dests(ipvs_handle *h, const struct ipvs_service *s, struct ipvs_dest **out, size_t *n)
{ DISPATCH(get_dests, s, out, n); }
int ipvs_flush(ipvs_handle *h) { DISPATCH(flush); }
int ipvs_zero(ipvs_handle *h, const struct ipvs_service *s) { DISPATCH(zero, s); }
int ipvs_get_timeouts(ipvs_handle *h, struct ipvs_timeouts *out) { DISPATCH(get_timeouts, out); }
int ipvs_set_timeouts(ipvs_handle *h, const struct ipvs_timeouts *t) { DISPATCH(set_timeouts, t); }
int ipvs_get_daemons(ipvs_handle *h, struct ipvs_daemon *out, size_t *n)
{ DISPATCH(get_daemons, out, n); }
int ipvs_start_daemon(ipvs_handle *h, const struct ipvs_daemon *d) { DISPATCH(start_daemon, d); }
int ipvs_stop_daemon(ipvs_handle *h, int state) { DISPATCH(stop_daemon, state); }
int ipvs_batch(ipvs_handle *h, struct ipvs_op *ops, size_t n)
{
    for (size_t i = 0; i < n; i++)
        ops[i].err = 1;
    DISPATCH(batch, ops, n);
}

int ipvs_read_proc_net(ipvs_handle *h, const char *name, char **out, size_t *len)
{
    char path[128];
    int fd, saved, rc;
    size_t cap = 65536, used = 0;
    char *buf;

    *out = NULL;
    *len = 0;
    if (strchr(name, '/') || strlen(name) > 64)
        return -EINVAL;
    snprintf(path, sizeof(path), "/proc/thread-self/net/%s", name);
    rc = lock_handle(h);
    if (rc < 0)
        return rc;
    rc = enter_netns(h->netns_fd, &saved);
    if (rc < 0) {
        pthread_mutex_unlock(&h->lock);
        return rc;
    }
    fd = open(path, O_RDONLY | O_CLOEXEC);
    rc = fd < 0 ? -errno : 0;
    int rc2 = leave_netns(saved);
    pthread_mutex_unlock(&h->lock);
    if (rc2 < 0) {
        if (fd >= 0)
            close(fd);
        return rc2;
    }
    if (rc < 0)
        return rc;
    buf = ipvs_malloc(cap);
    if (!buf) {
        close(fd);
        return -ENOMEM;
    }
    for (;;) {
        if (cap - used < 4096) {
            char *nb = ipvs_realloc(buf, cap * 2);
            if (!nb) {
                ipvs_xfree(buf);
                close(fd);
                return -ENOMEM;
            }
            buf = nb;
            cap *= 2;
        }
        ssize_t r = read(fd, buf + used, cap - used - 1);
        if (r < 0) {
            if (errno == EINTR)
                continue;
            rc = -errno;
            ipvs_xfree(buf);
            close(fd);
            return rc;
        }
        if (r == 0)
            break;
        used += (size_t)r;
    }
    close(fd);
    buf[used] = '\0';
    *out = buf;
    *len = used;
    return 0;
}
