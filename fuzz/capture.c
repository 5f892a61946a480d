/*
 * capture.c - records REAL kernel replies as the fuzzers' seed corpus.
 *
 * Linked with the csrc sources built with -DIPVS_CAPTURE, which makes the transports
 * call ipvs_debug_rx_hook with every raw reply buffer (each netlink datagram,
 * each sockopt GET result). Performs requests of every kind against the IPVS
 * table of the CURRENT network namespace (it flushes it!) and writes each
 * buffer to OUTDIR/nlparse/<label>-NN.bin or OUTDIR/soparse/<label>-NN.bin.
 *
 * Run it only in a throw-away namespace of the sandbox kernel:
 *   python3 -m ipvs.sandbox -- sh -c 'ip netns add c; ip -n c link set lo up;
 *       ip netns exec c fuzz/out/capture fuzz/corpus'
 * (`make capture` does exactly that.)
 */
#define _GNU_SOURCE
#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <unistd.h>
#include <linux/netlink.h>

#include "libipvs.h"
#include "sockopt_uapi.h"
#include "uapi.h"

static const char *outdir;
static const char *subdir = "nlparse";
static char label[64] = "unlabelled";
static int labelno;
static int nfiles, nfail;

static void write_file(const char *sub, const void *buf, size_t len)
{
    char path[512];
    FILE *f;
    snprintf(path, sizeof(path), "%s/%s/%s-%02d.bin", outdir, sub, label, labelno++);
    f = fopen(path, "wb");
    if (!f || fwrite(buf, 1, len, f) != len) {
        perror(path);
        exit(2);
    }
    fclose(f);
    nfiles++;
}

static void hook(const void *buf, size_t len)
{
    write_file(subdir, buf, len);
}

static void set_label(const char *sub, const char *fmt, ...)
{
    va_list ap;
    subdir = sub;
    va_start(ap, fmt);
    vsnprintf(label, sizeof(label), fmt, ap);
    va_end(ap);
    labelno = 0;
}

/* Run CALL with replies filed under LABEL; log its result. WANT: the errno
 * expected (0 = success); a mismatch is reported but not fatal. */
#define CAP(sub, want, lbl, call) do {                                     \
        int r_;                                                             \
        set_label(sub, "%s", lbl);                                          \
        r_ = (call);                                                        \
        if (r_ != -(want)) nfail++;                                         \
        fprintf(stderr, "%-8s %-32s -> %d%s\n", sub, label, r_,             \
                r_ != -(want) ? "   (UNEXPECTED)" : "");                    \
    } while (0)

static struct ipvs_service svc4(int proto, const char *ip, uint16_t port, const char *sched)
{
    struct ipvs_service s;
    memset(&s, 0, sizeof(s));
    s.af = AF_INET;
    s.protocol = (uint16_t)proto;
    inet_pton(AF_INET, ip, &s.addr.ip);
    s.port = port;
    snprintf(s.sched_name, sizeof(s.sched_name), "%s", sched);
    s.netmask = 0xffffffff;
    return s;
}

static struct ipvs_service svc6(int proto, const char *ip, uint16_t port, const char *sched)
{
    struct ipvs_service s;
    memset(&s, 0, sizeof(s));
    s.af = AF_INET6;
    s.protocol = (uint16_t)proto;
    inet_pton(AF_INET6, ip, s.addr.bytes);
    s.port = port;
    snprintf(s.sched_name, sizeof(s.sched_name), "%s", sched);
    s.netmask = 128;
    return s;
}

static struct ipvs_service svcfw(uint16_t af, uint32_t mark, const char *sched)
{
    struct ipvs_service s;
    memset(&s, 0, sizeof(s));
    s.af = af;
    s.fwmark = mark;
    snprintf(s.sched_name, sizeof(s.sched_name), "%s", sched);
    s.netmask = af == AF_INET ? 0xffffffff : 128;
    return s;
}

static struct ipvs_dest dst(uint16_t af, const char *ip, uint16_t port, uint32_t fwd, int w)
{
    struct ipvs_dest d;
    memset(&d, 0, sizeof(d));
    d.af = af;
    inet_pton(af, ip, d.addr.bytes);
    d.port = port;
    d.conn_flags = fwd;
    d.weight = w;
    return d;
}

/* ---- raw netlink requests the API cannot make (bad attributes: extack) ---- */

static int raw_fd = -1;
static uint32_t raw_seq = 1000;

static void raw_open(int cap_ack)
{
    int one = 1;
    struct sockaddr_nl sa = { .nl_family = AF_NETLINK };
    if (raw_fd >= 0)
        close(raw_fd);
    raw_fd = socket(AF_NETLINK, SOCK_RAW | SOCK_CLOEXEC, NETLINK_GENERIC);
    setsockopt(raw_fd, K_SOL_NETLINK, K_NETLINK_EXT_ACK, &one, sizeof(one));
    if (cap_ack)
        setsockopt(raw_fd, K_SOL_NETLINK, K_NETLINK_CAP_ACK, &one, sizeof(one));
    bind(raw_fd, (struct sockaddr *)&sa, sizeof(sa));
}

/* Send header + genl(cmd) + the attribute bytes given; record every datagram
 * until the request completes (NLMSG_ERROR or NLMSG_DONE). */
static void raw_req(const char *lbl, uint16_t type, uint16_t flags, uint8_t cmd,
                    const void *attrs, size_t alen)
{
    unsigned char buf[1024], rx[65536];
    struct nlmsghdr *nh = (struct nlmsghdr *)buf;
    size_t len = NLMSG_HDRLEN + 4 + alen;
    memset(buf, 0, sizeof(buf));
    nh->nlmsg_len = (uint32_t)len;
    nh->nlmsg_type = type;
    nh->nlmsg_flags = flags;
    nh->nlmsg_seq = ++raw_seq;
    buf[NLMSG_HDRLEN] = cmd;
    buf[NLMSG_HDRLEN + 1] = 1;
    memcpy(buf + NLMSG_HDRLEN + 4, attrs, alen);
    set_label("nlparse", "%s", lbl);
    if (send(raw_fd, buf, len, 0) < 0) {
        perror("send");
        nfail++;
        return;
    }
    for (int i = 0; i < 64; i++) {
        ssize_t n = recv(raw_fd, rx, sizeof(rx), 0);
        int done = 0;
        if (n <= 0)
            break;
        write_file("nlparse", rx, (size_t)n);
        for (struct nlmsghdr *m = (struct nlmsghdr *)rx; NLMSG_OK(m, (size_t)n);
             m = NLMSG_NEXT(m, n))
            if (m->nlmsg_type == NLMSG_ERROR || m->nlmsg_type == NLMSG_DONE) {
                if (m->nlmsg_type == NLMSG_ERROR)
                    fprintf(stderr, "nlparse  %-32s -> %d\n", lbl,
                            ((struct nlmsgerr *)NLMSG_DATA(m))->error);
                done = 1;
            }
        if (done)
            break;
    }
}

static size_t put_attr(unsigned char *p, uint16_t type, const void *data, size_t len)
{
    uint16_t l = (uint16_t)(4 + len);
    memcpy(p, &l, 2);
    memcpy(p + 2, &type, 2);
    memcpy(p + 4, data, len);
    memset(p + 4 + len, 0, NLA_ALIGN(l) - l);
    return NLA_ALIGN(l);
}

static void raw_requests(uint16_t fam)
{
    unsigned char a[256], nest[128];
    size_t n, nn;
    uint8_t one_byte = 7;

    for (int cap = 0; cap < 2; cap++) {
        char lbl[64];
        raw_open(cap);
        /* TIMEOUT_TCP is NLA_U32: 1 byte fails policy validation (extack) */
        n = put_attr(a, K_IPVS_CMD_ATTR_TIMEOUT_TCP, &one_byte, 1);
        snprintf(lbl, sizeof(lbl), "err-extack-policy%s", cap ? "-capped" : "");
        raw_req(lbl, fam, NLM_F_REQUEST | NLM_F_ACK, K_IPVS_CMD_SET_CONFIG, a, n);
        /* a SERVICE nest without anything in it */
        n = put_attr(a, K_IPVS_CMD_ATTR_SERVICE | NLA_F_NESTED, NULL, 0);
        snprintf(lbl, sizeof(lbl), "err-empty-service%s", cap ? "-capped" : "");
        raw_req(lbl, fam, NLM_F_REQUEST | NLM_F_ACK, K_IPVS_CMD_NEW_SERVICE, a, n);
        /* a SERVICE nest whose AF is one byte */
        nn = put_attr(nest, K_IPVS_SVC_ATTR_AF, &one_byte, 1);
        n = put_attr(a, K_IPVS_CMD_ATTR_SERVICE | NLA_F_NESTED, nest, nn);
        snprintf(lbl, sizeof(lbl), "err-short-af%s", cap ? "-capped" : "");
        raw_req(lbl, fam, NLM_F_REQUEST | NLM_F_ACK, K_IPVS_CMD_GET_SERVICE, a, n);
        /* unknown command */
        snprintf(lbl, sizeof(lbl), "err-unknown-cmd%s", cap ? "-capped" : "");
        raw_req(lbl, fam, NLM_F_REQUEST | NLM_F_ACK, 200, NULL, 0);
        /* a family id nobody has */
        snprintf(lbl, sizeof(lbl), "err-bad-family%s", cap ? "-capped" : "");
        raw_req(lbl, 0x7ff0, NLM_F_REQUEST | NLM_F_ACK, K_IPVS_CMD_GET_INFO, NULL, 0);
        /* DEST dump without a SERVICE */
        snprintf(lbl, sizeof(lbl), "err-dest-dump-nosvc%s", cap ? "-capped" : "");
        raw_req(lbl, fam, NLM_F_REQUEST | NLM_F_ACK | NLM_F_DUMP, K_IPVS_CMD_GET_DEST, NULL, 0);
    }
    /* the ctrl family: a name that does not exist, and the full family dump
     * entry of IPVS (ops, policies, ...) */
    raw_open(1);
    n = put_attr(a, K_CTRL_ATTR_FAMILY_NAME, "NOSUCHFAM", 10);
    raw_req("family-missing", K_GENL_ID_CTRL, NLM_F_REQUEST | NLM_F_ACK, K_CTRL_CMD_GETFAMILY, a, n);
    n = put_attr(a, K_CTRL_ATTR_FAMILY_NAME, "IPVS", 5);
    raw_req("family-ipvs-raw", K_GENL_ID_CTRL, NLM_F_REQUEST | NLM_F_ACK, K_CTRL_CMD_GETFAMILY, a, n);
    /* an ack that echoes a GET_CONFIG (no ACK_TLVS) */
    raw_req("config-raw-ack", fam, NLM_F_REQUEST | NLM_F_ACK, K_IPVS_CMD_GET_CONFIG, NULL, 0);
    close(raw_fd);
    raw_fd = -1;
}

/* ---- sockopt requests the API does not make itself ---- */

static void so_raw(void)
{
    char ver[SO_IPVS_VERSION_BUFLEN];
    socklen_t l = sizeof(ver);
    int fd = socket(AF_INET, SOCK_RAW | SOCK_CLOEXEC, IPPROTO_RAW);
    memset(ver, 0, sizeof(ver));
    set_label("soparse", "version");
    if (getsockopt(fd, IPPROTO_IP, SO_IPVS_GET_VERSION, ver, &l) == 0)
        write_file("soparse", ver, l);
    else
        nfail++;
    close(fd);
}

static uint16_t family_id(void)
{
    /* the id the netlink handle resolved: from the recorded reply, simpler
     * to ask again on a raw socket */
    unsigned char a[64], buf[256], rx[8192];
    struct nlmsghdr *nh = (struct nlmsghdr *)buf;
    size_t n = put_attr(a, K_CTRL_ATTR_FAMILY_NAME, "IPVS", 5);
    int fd = socket(AF_NETLINK, SOCK_RAW | SOCK_CLOEXEC, NETLINK_GENERIC);
    ssize_t r;
    memset(buf, 0, sizeof(buf));
    nh->nlmsg_len = (uint32_t)(NLMSG_HDRLEN + 4 + n);
    nh->nlmsg_type = K_GENL_ID_CTRL;
    nh->nlmsg_flags = NLM_F_REQUEST;
    buf[NLMSG_HDRLEN] = K_CTRL_CMD_GETFAMILY;
    buf[NLMSG_HDRLEN + 1] = 1;
    memcpy(buf + NLMSG_HDRLEN + 4, a, n);
    send(fd, buf, nh->nlmsg_len, 0);
    r = recv(fd, rx, sizeof(rx), 0);
    close(fd);
    if (r > (ssize_t)(NLMSG_HDRLEN + 4)) {
        size_t off = NLMSG_HDRLEN + 4;
        while (off + 4 <= (size_t)r) {
            uint16_t al, at;
            memcpy(&al, rx + off, 2);
            memcpy(&at, rx + off + 2, 2);
            if (al < 4)
                break;
            if ((at & NLA_TYPE_MASK) == K_CTRL_ATTR_FAMILY_ID) {
                uint16_t id;
                memcpy(&id, rx + off + 4, 2);
                return id;
            }
            off += NLA_ALIGN(al);
        }
    }
    return 0;
}

int main(int argc, char **argv)
{
    ipvs_handle *nl = NULL, *so = NULL;
    struct ipvs_info info;
    struct ipvs_timeouts to;
    struct ipvs_daemon dm[2];
    struct ipvs_service *arr;
    struct ipvs_dest *darr;
    size_t n, nd;
    char path[512];

    if (argc != 2) {
        fprintf(stderr, "usage: %s OUTDIR   (in a throw-away network namespace!)\n", argv[0]);
        return 2;
    }
    outdir = argv[1];
    snprintf(path, sizeof(path), "%s/nlparse", outdir);
    mkdir(outdir, 0755);
    mkdir(path, 0755);
    snprintf(path, sizeof(path), "%s/soparse", outdir);
    mkdir(path, 0755);
    ipvs_debug_rx_hook = hook;

    CAP("nlparse", 0, "family", ipvs_open(&nl, IPVS_BACKEND_NETLINK, -1, 5000));
    if (!nl)
        return 1;
    CAP("soparse", 0, "info-open", ipvs_open(&so, IPVS_BACKEND_SOCKOPT, -1, 5000));
    if (!so)
        return 1;

    CAP("nlparse", 0, "flush", ipvs_flush(nl));
    CAP("nlparse", 0, "info", ipvs_get_info(nl, &info));
    CAP("soparse", 0, "info", ipvs_get_info(so, &info));
    so_raw();
    CAP("nlparse", 0, "config", ipvs_get_timeouts(nl, &to));
    CAP("soparse", 0, "timeouts", ipvs_get_timeouts(so, &to));
    to.tcp = 901; to.tcp_fin = 121; to.udp = 301;
    CAP("nlparse", 0, "config-set-ack", ipvs_set_timeouts(nl, &to));
    CAP("nlparse", 0, "config-after-set", ipvs_get_timeouts(nl, &to));
    CAP("soparse", 0, "timeouts-after-set", ipvs_get_timeouts(so, &to));
    CAP("nlparse", 0, "daemons-none", ipvs_get_daemons(nl, dm, &n));
    CAP("soparse", 0, "daemons-none", ipvs_get_daemons(so, dm, &n));

    /* daemons: both states, the netlink-only options on the master */
    {
        struct ipvs_daemon m, b;
        memset(&m, 0, sizeof(m));
        m.state = IPVS_STATE_MASTER;
        strcpy(m.mcast_ifn, "lo");
        m.syncid = 7;
        m.sync_maxlen = 1400;
        m.mcast_af = AF_INET;
        inet_pton(AF_INET, "224.0.0.81", m.mcast_group.bytes);
        m.mcast_port = 8848;
        m.mcast_ttl = 2;
        CAP("nlparse", 0, "daemon-start-master", ipvs_start_daemon(nl, &m));
        memset(&b, 0, sizeof(b));
        b.state = IPVS_STATE_BACKUP;
        strcpy(b.mcast_ifn, "lo");
        b.syncid = 8;
        CAP("soparse", 0, "daemon-start-backup", ipvs_start_daemon(so, &b));
        CAP("nlparse", 0, "daemons-two", ipvs_get_daemons(nl, dm, &n));
        CAP("soparse", 0, "daemons-two", ipvs_get_daemons(so, dm, &n));
        CAP("nlparse", EEXIST, "err-daemon-running", ipvs_start_daemon(nl, &m));
        CAP("nlparse", 0, "daemon-stop-backup", ipvs_stop_daemon(nl, IPVS_STATE_BACKUP));
        CAP("nlparse", 0, "daemons-master", ipvs_get_daemons(nl, dm, &n));
        CAP("soparse", 0, "daemons-master", ipvs_get_daemons(so, dm, &n));
        CAP("nlparse", 0, "daemon-stop-master", ipvs_stop_daemon(nl, IPVS_STATE_MASTER));
        /* IPv6 multicast group on the backup */
        b.mcast_af = AF_INET6;
        inet_pton(AF_INET6, "ff02::1:81", b.mcast_group.bytes);
        b.mcast_port = 8849;
        set_label("nlparse", "daemon-start-backup6");
        {
            int r = ipvs_start_daemon(nl, &b);
            fprintf(stderr, "nlparse  %-32s -> %d (%s)\n", label, r, ipvs_errmsg(nl));
            if (r == 0) {
                CAP("nlparse", 0, "daemons-backup6", ipvs_get_daemons(nl, dm, &n));
                /* stopping a backup daemon sometimes takes longer than
                 * 30 s in the 6.1 UML sandbox (ETIMEDOUT here, harmless) */
                CAP("nlparse", 0, "daemon-stop-backup6", ipvs_stop_daemon(nl, IPVS_STATE_BACKUP));
            }
        }
        strcpy(m.mcast_ifn, "nosuch0");
        CAP("nlparse", ENODEV, "err-daemon-nodev", ipvs_start_daemon(nl, &m));
        CAP("nlparse", ESRCH, "err-daemon-not-running", ipvs_stop_daemon(nl, IPVS_STATE_MASTER));
    }

    /* services of every kind */
    struct ipvs_service s_tcp = svc4(IPPROTO_TCP, "10.0.0.1", 80, "rr");
    struct ipvs_service s_udp = svc4(IPPROTO_UDP, "10.0.0.2", 53, "wlc");
    struct ipvs_service s_sctp = svc4(IPPROTO_SCTP, "10.0.0.3", 5060, "sh");
    struct ipvs_service s_fw4 = svcfw(AF_INET, 42, "wrr");
    struct ipvs_service s_fw6 = svcfw(AF_INET6, 43, "lc");
    struct ipvs_service s_v6 = svc6(IPPROTO_TCP, "2001:db8::1", 443, "mh");
    struct ipvs_service s_sip = svc4(IPPROTO_UDP, "10.0.0.7", 5060, "rr");
    struct ipvs_service s_none = svc4(IPPROTO_TCP, "10.0.0.8", 81, "none");
    s_udp.flags = IPVS_SVC_F_PERSISTENT | IPVS_SVC_F_ONEPACKET;
    s_udp.timeout = 300;
    inet_pton(AF_INET, "255.255.255.0", &s_udp.netmask);
    s_sctp.flags = IPVS_SVC_F_SCHED1 | IPVS_SVC_F_SCHED2;
    s_fw6.flags = IPVS_SVC_F_PERSISTENT;
    s_fw6.timeout = 60;
    s_fw6.netmask = 64;
    s_v6.flags = IPVS_SVC_F_SCHED1 | IPVS_SVC_F_SCHED3;
    s_sip.flags = IPVS_SVC_F_PERSISTENT;
    s_sip.timeout = 120;
    strcpy(s_sip.pe_name, "sip");

    CAP("nlparse", 0, "svc-add-tcp", ipvs_add_service(nl, &s_tcp));
    CAP("nlparse", 0, "svc-add-udp", ipvs_add_service(nl, &s_udp));
    CAP("nlparse", 0, "svc-add-sctp", ipvs_add_service(nl, &s_sctp));
    CAP("nlparse", 0, "svc-add-fw4", ipvs_add_service(nl, &s_fw4));
    CAP("nlparse", 0, "svc-add-fw6", ipvs_add_service(nl, &s_fw6));
    CAP("nlparse", 0, "svc-add-v6", ipvs_add_service(nl, &s_v6));
    CAP("nlparse", 0, "svc-add-sip", ipvs_add_service(nl, &s_sip));
    CAP("soparse", 0, "svc-add-none", ipvs_add_service(so, &s_none));

    /* destinations of every kind */
    {
        struct ipvs_dest d;
        d = dst(AF_INET, "192.168.1.1", 80, IPVS_FWD_MASQ, 1);
        CAP("nlparse", 0, "dest-add-masq", ipvs_add_dest(nl, &s_tcp, &d));
        d = dst(AF_INET, "192.168.1.2", 80, IPVS_FWD_ROUTE, 3);
        d.u_threshold = 100; d.l_threshold = 10;
        CAP("nlparse", 0, "dest-add-route", ipvs_add_dest(nl, &s_tcp, &d));
        d = dst(AF_INET, "192.168.1.3", 80, IPVS_FWD_TUNNEL, 2);
        d.tun_type = K_IP_VS_TUNNEL_TYPE_IPIP;
        CAP("nlparse", 0, "dest-add-ipip", ipvs_add_dest(nl, &s_tcp, &d));
        d = dst(AF_INET, "192.168.1.4", 80, IPVS_FWD_TUNNEL, 2);
        d.tun_type = K_IP_VS_TUNNEL_TYPE_GUE; d.tun_port = 6080;
        d.tun_flags = K_IP_VS_TUNNEL_ENCAP_FLAG_CSUM;
        CAP("nlparse", 0, "dest-add-gue", ipvs_add_dest(nl, &s_tcp, &d));
        d = dst(AF_INET, "192.168.1.5", 80, IPVS_FWD_TUNNEL, 2);
        d.tun_type = K_IP_VS_TUNNEL_TYPE_GRE;
        d.tun_flags = K_IP_VS_TUNNEL_ENCAP_FLAG_CSUM | K_IP_VS_TUNNEL_ENCAP_FLAG_REMCSUM;
        CAP("nlparse", 0, "dest-add-gre", ipvs_add_dest(nl, &s_tcp, &d));
        d = dst(AF_INET, "127.0.0.1", 80, IPVS_FWD_LOCAL, 1);
        CAP("nlparse", 0, "dest-add-local", ipvs_add_dest(nl, &s_tcp, &d));
        d = dst(AF_INET, "192.168.1.6", 80, IPVS_FWD_MASQ, 0);
        CAP("soparse", 0, "dest-add-weight0", ipvs_add_dest(so, &s_tcp, &d));
        d = dst(AF_INET, "192.168.2.1", 53, IPVS_FWD_MASQ, 5);
        CAP("nlparse", 0, "dest-add-udp", ipvs_add_dest(nl, &s_udp, &d));
        d = dst(AF_INET, "192.168.2.2", 0, IPVS_FWD_ROUTE, 5);
        CAP("nlparse", 0, "dest-add-fw4", ipvs_add_dest(nl, &s_fw4, &d));
        d = dst(AF_INET, "192.168.2.3", 5060, IPVS_FWD_ROUTE, 1);
        CAP("nlparse", 0, "dest-add-sctp", ipvs_add_dest(nl, &s_sctp, &d));
        d = dst(AF_INET6, "2001:db8::10", 443, IPVS_FWD_MASQ, 1);
        CAP("nlparse", 0, "dest-add-v6-masq", ipvs_add_dest(nl, &s_v6, &d));
        d = dst(AF_INET6, "2001:db8::11", 443, IPVS_FWD_ROUTE, 4);
        CAP("nlparse", 0, "dest-add-v6-route", ipvs_add_dest(nl, &s_v6, &d));
        d = dst(AF_INET6, "2001:db8::12", 443, IPVS_FWD_TUNNEL, 1);
        d.tun_type = K_IP_VS_TUNNEL_TYPE_GUE; d.tun_port = 5555;
        CAP("nlparse", 0, "dest-add-v6-gue", ipvs_add_dest(nl, &s_v6, &d));
        d = dst(AF_INET, "192.168.3.1", 443, IPVS_FWD_TUNNEL, 1);   /* mixed family */
        CAP("nlparse", 0, "dest-add-v6svc-v4tun", ipvs_add_dest(nl, &s_v6, &d));
        d = dst(AF_INET6, "2001:db8::20", 0, IPVS_FWD_ROUTE, 1);
        CAP("nlparse", 0, "dest-add-fw6", ipvs_add_dest(nl, &s_fw6, &d));
        d = dst(AF_INET, "192.168.4.1", 5060, IPVS_FWD_MASQ, 1);
        CAP("nlparse", 0, "dest-add-sip", ipvs_add_dest(nl, &s_sip, &d));

        /* errors */
        CAP("nlparse", EEXIST, "err-svc-exists", ipvs_add_service(nl, &s_tcp));
        CAP("nlparse", EEXIST, "err-dest-exists", ipvs_add_dest(nl, &s_sip, &d));
        {
            struct ipvs_service miss = svc4(IPPROTO_TCP, "10.9.9.9", 9, "rr");
            struct ipvs_service badsched = svc4(IPPROTO_TCP, "10.9.9.8", 9, "nosuch");
            struct ipvs_service badaf = s_tcp;
            struct ipvs_service badmask = s_v6;
            struct ipvs_service badpe = s_sip;
            CAP("nlparse", ESRCH, "err-svc-missing-del", ipvs_del_service(nl, &miss));
            CAP("nlparse", ESRCH, "err-svc-missing-get", ipvs_get_service(nl, &miss, &miss));
            CAP("nlparse", ENOENT, "err-sched-missing", ipvs_add_service(nl, &badsched));
            CAP("soparse", ESRCH, "err-svc-missing-get", ipvs_get_service(so, &miss, &miss));
            badaf.af = 99;
            CAP("nlparse", EAFNOSUPPORT, "err-svc-af", ipvs_add_service(nl, &badaf));
            badmask.port = 444;
            badmask.netmask = 200;
            CAP("nlparse", EINVAL, "err-svc-netmask", ipvs_add_service(nl, &badmask));
            badpe.port = 5061;
            strcpy(badpe.pe_name, "nosuchpe");
            CAP("nlparse", ENOENT, "err-pe-missing", ipvs_add_service(nl, &badpe));
            d = dst(AF_INET, "192.168.9.9", 80, IPVS_FWD_MASQ, -1);
            CAP("nlparse", ERANGE, "err-dest-weight", ipvs_add_dest(nl, &s_tcp, &d));
            d = dst(AF_INET, "192.168.9.9", 80, IPVS_FWD_MASQ, 1);
            d.u_threshold = 5; d.l_threshold = 10;
            CAP("nlparse", ERANGE, "err-dest-thresh", ipvs_add_dest(nl, &s_tcp, &d));
            d = dst(AF_INET, "192.168.9.9", 80, IPVS_FWD_TUNNEL, 1);
            d.tun_type = K_IP_VS_TUNNEL_TYPE_GUE;
            CAP("nlparse", EINVAL, "err-dest-gue-port0", ipvs_add_dest(nl, &s_tcp, &d));
            d = dst(AF_INET, "192.168.9.9", 80, IPVS_FWD_MASQ, 1);
            CAP("nlparse", ENOENT, "err-dest-missing-edit", ipvs_update_dest(nl, &s_tcp, &d));
            CAP("nlparse", ESRCH, "err-dest-svc-missing", ipvs_add_dest(nl, &miss, &d));
            CAP("nlparse", 0, "dests-svc-missing", ipvs_get_dests(nl, &miss, &darr, &n));
            ipvs_free(darr);
        }
    }

    /* reading everything back */
    CAP("nlparse", 0, "services", ipvs_get_services(nl, &arr, &n));
    if (arr) {
        for (size_t i = 0; i < n; i++) {
            struct ipvs_service one;
            char l[64];
            snprintf(l, sizeof(l), "service-%zu", i);
            CAP("nlparse", 0, l, ipvs_get_service(nl, &arr[i], &one));
            snprintf(l, sizeof(l), "dests-%zu", i);
            CAP("nlparse", 0, l, ipvs_get_dests(nl, &arr[i], &darr, &nd));
            ipvs_free(darr);
            if (arr[i].af == AF_INET) {
                snprintf(l, sizeof(l), "service-%zu", i);
                CAP("soparse", 0, l, ipvs_get_service(so, &arr[i], &one));
                snprintf(l, sizeof(l), "dests-%zu", i);
                CAP("soparse", 0, l, ipvs_get_dests(so, &arr[i], &darr, &nd));
                ipvs_free(darr);
            }
        }
        ipvs_free(arr);
    }
    CAP("soparse", 0, "services", ipvs_get_services(so, &arr, &n));
    ipvs_free(arr);

    CAP("nlparse", 0, "zero-one", ipvs_zero(nl, &s_tcp));
    CAP("nlparse", 0, "zero-all", ipvs_zero(nl, NULL));
    s_tcp.flags = IPVS_SVC_F_PERSISTENT;
    s_tcp.flags_mask = IPVS_SVC_F_PERSISTENT;
    s_tcp.timeout = 30;
    CAP("nlparse", 0, "svc-update", ipvs_update_service(nl, &s_tcp));
    CAP("nlparse", 0, "service-updated", ipvs_get_service(nl, &s_tcp, &s_tcp));

    /* a batch with failures in it (recvmmsg path) */
    {
        struct ipvs_op ops[6];
        memset(ops, 0, sizeof(ops));
        ops[0].op = IPVS_OP_ADD_SERVICE; ops[0].svc = svc4(IPPROTO_TCP, "10.1.0.1", 80, "rr");
        ops[1].op = IPVS_OP_ADD_SERVICE; ops[1].svc = s_tcp;                       /* EEXIST */
        ops[2].op = IPVS_OP_ADD_DEST; ops[2].svc = ops[0].svc;
        ops[2].dest = dst(AF_INET, "192.168.5.1", 80, IPVS_FWD_MASQ, 1);
        ops[3].op = IPVS_OP_DEL_DEST; ops[3].svc = ops[0].svc;
        ops[3].dest = dst(AF_INET, "192.168.5.9", 80, IPVS_FWD_MASQ, 1);          /* ENOENT */
        ops[4].op = IPVS_OP_ADD_SERVICE; ops[4].svc = svc4(IPPROTO_TCP, "10.1.0.2", 80, "nosuch");
        ops[5].op = IPVS_OP_DEL_SERVICE; ops[5].svc = svc4(IPPROTO_TCP, "10.1.0.9", 80, "rr");
        CAP("nlparse", 0, "batch-mixed", ipvs_batch(nl, ops, 6));
    }

    /* multi-part dumps: enough services / destinations for several datagrams */
    {
        enum { NS = 120, ND = 120 };
        static struct ipvs_op ops[NS + ND];
        char ip[32];
        memset(ops, 0, sizeof(ops));
        for (int i = 0; i < NS; i++) {
            snprintf(ip, sizeof(ip), "10.2.%d.%d", i / 200, i % 200 + 1);
            ops[i].op = IPVS_OP_ADD_SERVICE;
            ops[i].svc = svc4(i % 2 ? IPPROTO_UDP : IPPROTO_TCP, ip, (uint16_t)(1000 + i), "wrr");
        }
        for (int i = 0; i < ND; i++) {
            snprintf(ip, sizeof(ip), "172.16.%d.%d", i / 200, i % 200 + 1);
            ops[NS + i].op = IPVS_OP_ADD_DEST;
            ops[NS + i].svc = ops[0].svc;
            ops[NS + i].dest = dst(AF_INET, ip, 8080, IPVS_FWD_MASQ, i % 7);
        }
        CAP("nlparse", 0, "batch-bulk", ipvs_batch(nl, ops, NS + ND));
        CAP("nlparse", 0, "services-multipart", ipvs_get_services(nl, &arr, &n));
        ipvs_free(arr);
        CAP("nlparse", 0, "dests-multipart", ipvs_get_dests(nl, &ops[0].svc, &darr, &n));
        ipvs_free(darr);
        CAP("soparse", 0, "services-bulk", ipvs_get_services(so, &arr, &n));
        ipvs_free(arr);
        CAP("soparse", 0, "dests-bulk", ipvs_get_dests(so, &ops[0].svc, &darr, &n));
        ipvs_free(darr);
    }

    raw_requests(family_id());

    CAP("nlparse", 0, "flush-end", ipvs_flush(nl));
    CAP("nlparse", 0, "services-empty", ipvs_get_services(nl, &arr, &n));
    ipvs_free(arr);
    CAP("soparse", 0, "services-empty", ipvs_get_services(so, &arr, &n));
    ipvs_free(arr);
    ipvs_close(nl);
    ipvs_close(so);
    fprintf(stderr, "capture: %d files, %d unexpected results\n", nfiles, nfail);
    return 0;
}
