/*
 * transport.h - the interface between the dispatcher (libipvs.c) and the two
 * transports, netlink (netlink.c, nlio.c, nlbatch.c) and sockopt
 * (sockopt.c): the operations each transport implements and the dispatcher
 * calls. The transports call nothing of the dispatcher: what they share with
 * it about a handle is in handle.h. Not installed.
 */
#ifndef IPVS_TRANSPORT_H
#define IPVS_TRANSPORT_H

#include "handle.h"

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
