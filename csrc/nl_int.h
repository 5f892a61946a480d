/*
 * nl_int.h - the netlink transport's internals, shared by its three parts:
 *   nlio.c     the request/reply engine (sockets, receive, matching replies
 *              to requests, the family id and its re-resolution)
 *   netlink.c  the transport interface (nl_open, nl_get_services, ...)
 *   nlbatch.c  batches (nl_batch)
 * Messages are built by nlbuild.c and parsed by nlparse.c. Not installed.
 */
#ifndef IPVS_NL_INT_H
#define IPVS_NL_INT_H

#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>

#include "transport.h"
#include "nlbuild.h"
#include "nlparse.h"

#define NL_RXBUF_SIZE   65536u      /* kernel dump skbs are at most ~32 KiB */
#define NL_TXBUF_SIZE   65536u      /* one batch chunk */
#define NL_RCVBUF_WANT  (8 << 20)   /* room for the error replies of a chunk */
#define NL_SNDBUF_WANT  (1 << 20)   /* sendmsg needs len <= sndbuf - 32 */
/* Receive-buffer memory one error reply (NLMSG_ERROR, capped, maybe with an
 * extack message) is charged in the kernel (skb truesize), rounded up. */
#define NL_ERR_COST     1280u
#define NL_CHUNK_MAXMSG 4096u
/* batch replies are received into slots of h->rxbuf */
#define NL_SLOT         2048u
#define NL_MAXSLOTS     64u

/* What completes a request (nl_wait):
 * WAIT_ACK    its NLMSG_ERROR (the ack, or the error);
 * WAIT_REPLY  its first data message, or an error;
 * WAIT_DUMP   NLMSG_DONE, or an error;
 * WAIT_PROBE  any message of the NEXT sequence number (a probe request sent
 *             in the same datagram), the request's own error or ack, if one
 *             came, being the result (see nl_stop_daemon). */
enum { WAIT_ACK, WAIT_REPLY, WAIT_DUMP, WAIT_PROBE };

typedef int (*nl_cb)(void *ctx, const struct nlp_msg *m);

int nl_send(ipvs_handle *h, const void *buf, size_t len);
/* Up to NL_MAXSLOTS batch replies at once (see nlio.c). */
int nl_recv_many(ipvs_handle *h, size_t *lens, int *trunc);
/* Read the replies to request seq until it completes (mode: WAIT_*). Data
 * messages go to cb (may be NULL); *ndata counts them. */
int nl_wait(ipvs_handle *h, uint32_t seq, int mode, nl_cb cb, void *ctx, size_t *ndata);
/* Send the one request in h->txbuf[0..len) with a fresh seq and the current
 * family id, and wait for it; handles a busy dump and a stale family id. */
int nl_txn(ipvs_handle *h, size_t len, int mode, nl_cb cb, void *ctx);
/* Resolve the family id into *id. */
int nl_resolve_family(ipvs_handle *h, uint16_t *id);
/* After an ENOENT: 1 = the family id changed (h->family_id updated),
 * 0 = unchanged, -ENOPROTOOPT = the family is gone, other < 0: unknown. */
int nl_family_recheck(ipvs_handle *h);

/* A request built in h->txbuf. */
static inline struct nlb nl_tx_begin(ipvs_handle *h)
{
    return nlb_init(h->txbuf, h->txcap);
}

#endif
