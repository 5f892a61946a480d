/*
 * libipvs.c - the public C API: locking, namespaces, backend choice, and
 * dispatch to the netlink (nl_*) or sockopt (so_*) transport.
 */
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <sched.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "alloc.h"
#include "ipvs_int.h"

void ipvs_set_errmsg(ipvs_handle *h, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(h->errmsg, sizeof(h->errmsg), fmt, ap);
    va_end(ap);
}

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
    h->timeout_ms = timeout_ms;
    /* error-checking: a signal handler that calls the same handle while the
     * interrupted call holds the lock gets EDEADLK instead of hanging */
    pthread_mutexattr_t ma;
    pthread_mutexattr_init(&ma);
    pthread_mutexattr_settype(&ma, PTHREAD_MUTEX_ERRORCHECK);
    rc = pthread_mutex_init(&h->lock, &ma);
    pthread_mutexattr_destroy(&ma);
    if (rc != 0) {
        ipvs_xfree(h);
        return -ENOMEM;
    }
    if (netns_fd >= 0) {
        h->netns_fd = fcntl(netns_fd, F_DUPFD_CLOEXEC, 0);
        if (h->netns_fd < 0) {
            rc = -errno;
            goto fail;
        }
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
    ipvs_xfree(h->rxbuf);
    ipvs_xfree(h->txbuf);
    pthread_mutex_destroy(&h->lock);
    ipvs_xfree(h);
}

int ipvs_backend(const ipvs_handle *h) { return h->backend; }
const char *ipvs_errmsg(const ipvs_handle *h) { return h->errmsg; }
int ipvs_fd(const ipvs_handle *h) { return h->fd; }

int ipvs_set_interrupt_check(ipvs_handle *h, int (*cb)(void *arg), void *arg)
{
    pthread_mutex_lock(&h->lock);
    h->intr_cb = cb;
    h->intr_arg = arg;
    pthread_mutex_unlock(&h->lock);
    return 0;
}

int ipvs_test_swap_fd(ipvs_handle *h, int fd)
{
    int old;
    pthread_mutex_lock(&h->lock);
    old = h->fd;
    h->fd = fd;
    pthread_mutex_unlock(&h->lock);
    return old;
}

int ipvs_set_timeout(ipvs_handle *h, int timeout_ms)
{
    pthread_mutex_lock(&h->lock);
    h->timeout_ms = timeout_ms;
    pthread_mutex_unlock(&h->lock);
    return 0;
}

void ipvs_free(void *p) { ipvs_xfree(p); }

/* Lock, clear the message, call the transport's function, unlock. */
#define DISPATCH(name, ...)                                        \
    do {                                                           \
        int rc_;                                                   \
        if (pthread_mutex_lock(&h->lock) != 0)                     \
            return -EDEADLK;                                       \
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
    pthread_mutex_lock(&h->lock);
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
