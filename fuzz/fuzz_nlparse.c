/*
 * fuzz_nlparse.c - libFuzzer target for csrc/nlparse.c.
 *
 * The input is one receive buffer as the kernel would hand it to recvmsg
 * (the seed corpus, fuzz/corpus/nlparse, holds real ones recorded by
 * fuzz/capture.c). Like netlink.c, the target walks the messages; unlike it,
 * it feeds every message to EVERY parser (whatever its type), and every
 * top-level attribute's payload to every attribute-group parser, so one input
 * reaches all of: message walking, NLMSG_ERROR/DONE with extended ack, genl
 * header, family reply, service/dest/daemon/stats(64) groups, info, config.
 * Outputs are checked for the invariants the callers rely on (NUL-terminated
 * names and messages).
 */
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>

#include "nlparse.h"

#define CHECK(c) do { if (!(c)) abort(); } while (0)

static void check_str(const char *s, size_t cap)
{
    CHECK(memchr(s, 0, cap) != NULL);
}

static void attr_groups(const uint8_t *b, size_t len)
{
    struct ipvs_stats st;
    struct ipvs_service svc;
    struct ipvs_dest d;
    struct ipvs_daemon dm;

    (void)nlp_parse_stats(b, len, &st);
    if (nlp_parse_service(b, len, &svc) == 0) {
        check_str(svc.sched_name, sizeof(svc.sched_name));
        check_str(svc.pe_name, sizeof(svc.pe_name));
    }
    (void)nlp_parse_dest(b, len, AF_INET, &d);
    (void)nlp_parse_dest(b, len, AF_INET6, &d);
    if (nlp_parse_daemon(b, len, &dm) == 0)
        check_str(dm.mcast_ifn, sizeof(dm.mcast_ifn));
}

static void one_msg(const struct nlp_msg *m)
{
    char msg[IPVS_ERRMSG_MAX], tiny[1];
    int err = 0;
    uint8_t cmd;
    const uint8_t *attrs;
    size_t alen;
    uint16_t id;
    struct ipvs_service svc;
    struct ipvs_dest d;
    struct ipvs_daemon dm;
    struct ipvs_info info;
    struct ipvs_timeouts to;

    if (nlp_parse_error(m, &err, msg, sizeof(msg)) == 0) {
        CHECK(err <= 0 && err >= -4095);
        check_str(msg, sizeof(msg));
    }
    (void)nlp_parse_error(m, &err, tiny, sizeof(tiny));
    (void)nlp_parse_error(m, &err, NULL, 0);

    if (nlp_genl(m, &cmd, &attrs, &alen) == 0) {
        size_t off = 0;
        struct nlp_attr a;
        CHECK(attrs + alen == m->data + m->datalen);
        while (nlp_next_attr(attrs, alen, &off, &a) > 0) {
            CHECK(a.data >= attrs && a.data + a.len <= attrs + alen);
            attr_groups(a.data, a.len);
        }
    }
    (void)nlp_parse_family_msg(m, &id);
    if (nlp_parse_service_msg(m, &svc) == 0)
        check_str(svc.sched_name, sizeof(svc.sched_name));
    (void)nlp_parse_dest_msg(m, AF_INET, &d);
    (void)nlp_parse_dest_msg(m, AF_INET6, &d);
    if (nlp_parse_daemon_msg(m, &dm) == 0)
        check_str(dm.mcast_ifn, sizeof(dm.mcast_ifn));
    (void)nlp_parse_info_msg(m, &info);
    (void)nlp_parse_config_msg(m, &to);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    size_t off = 0, prev = 0;
    struct nlp_msg m;
    int r;

    while ((r = nlp_next_msg(data, size, &off, &m)) > 0) {
        CHECK(off > prev && off <= size);
        CHECK(m.data >= data && m.data + m.datalen <= data + size);
        prev = off;
        one_msg(&m);
    }
    /* the whole input as a bare attribute area too */
    attr_groups(data, size);
    return 0;
}
