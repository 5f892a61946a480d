/*
 * handle.c - what the dispatcher and both transports share about a handle
 * (see handle.h): its error message, and the hooks of the capture and test
 * builds. Depends on nothing in csrc/ but the headers.
 */
#include <stdarg.h>
#include <stdio.h>

#include "handle.h"

void ipvs_set_errmsg(ipvs_handle *h, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(h->errmsg, sizeof(h->errmsg), fmt, ap);
    va_end(ap);
}

const char *ipvs_errmsg(const ipvs_handle *h) { return h->errmsg; }

#ifdef IPVS_CAPTURE
/* set by fuzz/capture.c; called through ipvs_rx_seen (handle.h) */
void (*ipvs_debug_rx_hook)(const void *buf, size_t len);
#endif

#ifdef IPVS_TEST_HOOKS
/* Test builds only: put fd in the handle's socket's place, return the old
 * one (e.g. a socketpair standing in for the kernel). */
int ipvs_test_swap_fd(ipvs_handle *h, int fd)
{
    int old;
    pthread_mutex_lock(&h->lock);
    old = h->fd;
    h->fd = fd;
    pthread_mutex_unlock(&h->lock);
    return old;
}
#endif
