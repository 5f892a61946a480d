/*
 * handle.h - the handle itself, shared by the dispatcher (libipvs.c) and the
 * two transports (netlink.c, nlio.c, nlbatch.c; sockopt.c): struct
 * ipvs_handle, its error message, and the hooks that tests and the corpus
 * capture set. handle.c calls no other file of csrc/: it is the bottom of
 * the C layer (with alloc.c), so that no transport ever calls into the
 * dispatcher (the picture: docs/DEVELOPING.md, "The C layer"). Not
 * installed.
 */
#ifndef IPVS_HANDLE_H
#define IPVS_HANDLE_H

#include <pthread.h>
#include <stddef.h>
#include <stdint.h>

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

/* Set h->errmsg (printf-style); "" clears it. (ipvs_errmsg, the public
 * reader of libipvs.h, is in handle.c too.) */
void ipvs_set_errmsg(ipvs_handle *h, const char *fmt, ...)
    __attribute__((format(printf, 2, 3)));

/* Every raw reply buffer a transport received (each netlink datagram, each
 * sockopt GET result) goes through here: to ipvs_debug_rx_hook (libipvs.h)
 * in a -DIPVS_CAPTURE build (fuzz/capture.c), nowhere in any other build. */
#ifdef IPVS_CAPTURE
static inline void ipvs_rx_seen(const void *buf, size_t len)
{
    if (ipvs_debug_rx_hook)
        ipvs_debug_rx_hook(buf, len);
}
#else
static inline void ipvs_rx_seen(const void *buf, size_t len)
{
    (void)buf;
    (void)len;
}
#endif

#endif
