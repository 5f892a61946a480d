/*
 * ipvs_int.h - internals shared by libipvs.c (dispatch, locking, namespaces)
 * and the two transports, netlink.c and sockopt.c. Not installed.
 */
#ifndef IPVS_INT_H
#define IPVS_INT_H

#include <pthread.h>
#include "libipvs.h"

struct ipvs_handle {
    int backend;                 /* IPVS_BACKEND_NETLINK / SOCKOPT */
    int fd;                      /* the transport's socket, SOCK_CLOEXEC */
    int netns_fd;                /* dup of the namespace fd given, or -1 */
    int home_ns_fd;              /* the namespace the socket was made in (a dup
                                    of netns_fd, or the opener's own): a child
                                    process reopens the socket there */
    unsigned long fork_gen;      /* ipvs_fork_gen when the socket was made */
    int timeout_ms;              /* <= 0: no timeout */
    /* netlink */
    uint16_t family_id;
    uint32_t seq;
    uint32_t portid;
    unsigned char *rxbuf;        /* reused receive buffer (page faults are costly) */
    size_t rxcap;
    size_t rx_pending;           /* netlink: length of a second datagram waiting
                                    in the upper half of rxbuf (0 = none) */
    unsigned char *txbuf;        /* reused send buffer for batches */
    size_t txcap;
    char errmsg[IPVS_ERRMSG_MAX];
    pthread_mutex_t lock;
    /* optional interrupt check, called on EINTR while waiting for a reply:
     * nonzero aborts the call with -EINTR (see ipvs_set_interrupt_check) */
    int (*intr_cb)(void *arg);
    void *intr_arg;
};

/* Set h->errmsg (printf-style); "" clears it. */
void ipvs_set_errmsg(ipvs_handle *h, const char *fmt, ...)
    __attribute__((format(printf, 2, 3)));

/*
 * Each transport implements the public operations without locking (the
 * dispatcher in libipvs.c holds h->lock). Same return conventions.
 * *_open creates h->fd in the current namespace (the dispatcher has already
 * entered the requested namespace). nl_open returns -ENOENT when the "IPVS"
 * generic netlink family does not exist (module not loaded / no IPVS), and
 * so_open returns -ENOPROTOOPT (or the errno seen) when IPVS sockopts are
 * unavailable.
 */
#define IPVS_TRANSPORT_DECL(p) \
    int p##_open(ipvs_handle *h); \
    void p##_close(ipvs_handle *h); \
    int p##_get_info(ipvs_handle *h, struct ipvs_info *out); \
    int p##_add_service(ipvs_handle *h, const struct ipvs_service *svc); \
    int p##_update_service(ipvs_handle *h, const struct ipvs_service *svc); \
    int p##_del_service(ipvs_handle *h, const struct ipvs_service *svc); \
    int p##_get_service(ipvs_handle *h, const struct ipvs_service *key, struct ipvs_service *out); \
    int p##_get_services(ipvs_handle *h, struct ipvs_service **out, size_t *n); \
    int p##_add_dest(ipvs_handle *h, const struct ipvs_service *svc, const struct ipvs_dest *d); \
    int p##_update_dest(ipvs_handle *h, const struct ipvs_service *svc, const struct ipvs_dest *d); \
    int p##_del_dest(ipvs_handle *h, const struct ipvs_service *svc, const struct ipvs_dest *d); \
    int p##_get_dests(ipvs_handle *h, const struct ipvs_service *svc, struct ipvs_dest **out, size_t *n); \
    int p##_flush(ipvs_handle *h); \
    int p##_zero(ipvs_handle *h, const struct ipvs_service *svc); \
    int p##_get_timeouts(ipvs_handle *h, struct ipvs_timeouts *out); \
    int p##_set_timeouts(ipvs_handle *h, const struct ipvs_timeouts *to); \
    int p##_get_daemons(ipvs_handle *h, struct ipvs_daemon *out, size_t *n); \
    int p##_start_daemon(ipvs_handle *h, const struct ipvs_daemon *d); \
    int p##_stop_daemon(ipvs_handle *h, int state); \
    int p##_batch(ipvs_handle *h, struct ipvs_op *ops, size_t n);

IPVS_TRANSPORT_DECL(nl)
IPVS_TRANSPORT_DECL(so)

#endif
