/*
 * test_sockopt_util.c - the support of test_sockopt.c (see test_sockopt.h).
 */
#define _GNU_SOURCE
#include "test_sockopt.h"

/* ---- netlink stubs: link without netlink.c ---- */
int nl_open(ipvs_handle *h) { (void)h; return -ENOENT; }
void nl_close(ipvs_handle *h) { (void)h; }
int nl_get_info(ipvs_handle *h, struct ipvs_info *o) { (void)h; (void)o; return -ENOSYS; }
int nl_add_service(ipvs_handle *h, const struct ipvs_service *s) { (void)h; (void)s; return -ENOSYS; }
int nl_update_service(ipvs_handle *h, const struct ipvs_service *s) { (void)h; (void)s; return -ENOSYS; }
int nl_del_service(ipvs_handle *h, const struct ipvs_service *s) { (void)h; (void)s; return -ENOSYS; }
int nl_get_service(ipvs_handle *h, const struct ipvs_service *k, struct ipvs_service *o)
{ (void)h; (void)k; (void)o; return -ENOSYS; }
int nl_get_services(ipvs_handle *h, struct ipvs_service **o, size_t *n)
{ (void)h; (void)o; (void)n; return -ENOSYS; }
int nl_add_dest(ipvs_handle *h, const struct ipvs_service *s, const struct ipvs_dest *d)
{ (void)h; (void)s; (void)d; return -ENOSYS; }
int nl_update_dest(ipvs_handle *h, const struct ipvs_service *s, const struct ipvs_dest *d)
{ (void)h; (void)s; (void)d; return -ENOSYS; }
int nl_del_dest(ipvs_handle *h, const struct ipvs_service *s, const struct ipvs_dest *d)
{ (void)h; (void)s; (void)d; return -ENOSYS; }
int nl_get_dests(ipvs_handle *h, const struct ipvs_service *s, struct ipvs_dest **o, size_t *n)
{ (void)h; (void)s; (void)o; (void)n; return -ENOSYS; }
int nl_flush(ipvs_handle *h) { (void)h; return -ENOSYS; }
int nl_zero(ipvs_handle *h, const struct ipvs_service *s) { (void)h; (void)s; return -ENOSYS; }
int nl_get_timeouts(ipvs_handle *h, struct ipvs_timeouts *o) { (void)h; (void)o; return -ENOSYS; }
int nl_set_timeouts(ipvs_handle *h, const struct ipvs_timeouts *t) { (void)h; (void)t; return -ENOSYS; }
int nl_get_daemons(ipvs_handle *h, struct ipvs_daemon *o, size_t *n)
{ (void)h; (void)o; (void)n; return -ENOSYS; }
int nl_start_daemon(ipvs_handle *h, const struct ipvs_daemon *d) { (void)h; (void)d; return -ENOSYS; }
int nl_stop_daemon(ipvs_handle *h, int s) { (void)h; (void)s; return -ENOSYS; }
int nl_batch(ipvs_handle *h, struct ipvs_op *o, size_t n) { (void)h; (void)o; (void)n; return -ENOSYS; }

/* ---- getsockopt interposition: grow the table between count and read ---- */
int grow_left;          /* how many GET_SERVICES/GET_DESTS to disturb */
uint32_t grow_seq;
struct so_svc_req grow_svc;   /* for GET_DESTS: the service to grow */

int getsockopt(int fd, int level, int name, void *val, socklen_t *len)
{
    if (grow_left > 0 && level == IPPROTO_IP &&
        (name == SO_IPVS_GET_SERVICES || name == SO_IPVS_GET_DESTS)) {
        grow_left--;
        grow_seq++;
        if (name == SO_IPVS_GET_SERVICES) {
            struct so_svc_req r;
            memset(&r, 0, sizeof(r));
            r.protocol = IPPROTO_TCP;
            r.addr = htonl(0x0a630000u + grow_seq);    /* 10.99.x.y */
            r.port = htons(80);
            memcpy(r.sched_name, "rr", 3);
            r.netmask = 0xffffffffu;
            if (syscall(SYS_setsockopt, fd, IPPROTO_IP, SO_IPVS_SET_ADD, &r, sizeof(r)))
                perror("grow service");
        } else {
            struct so_svcdest_req r;
            memset(&r, 0, sizeof(r));
            r.svc = grow_svc;
            r.dest.addr = htonl(0xac630000u + grow_seq); /* 172.99.x.y */
            r.dest.port = htons(80);
            r.dest.weight = 1;
            if (syscall(SYS_setsockopt, fd, IPPROTO_IP, SO_IPVS_SET_ADDDEST, &r, sizeof(r)))
                perror("grow dest");
        }
    }
    return (int)syscall(SYS_getsockopt, fd, level, name, val, len);
}

/* ---- helpers ---- */
int fails, checks;
ipvs_handle *h;

const char *ename(int rc)
{
    static char buf[32];
    switch (-rc) {
    case 0: return "0";
#define E(x) case x: return #x;
    E(EEXIST) E(ESRCH) E(ENOENT) E(ERANGE) E(EFAULT) E(EINVAL) E(EOPNOTSUPP)
    E(EAFNOSUPPORT) E(ENODEV) E(EPERM) E(ENOPROTOOPT) E(EAGAIN) E(EBUSY)
    E(ENOSYS) E(EPROTO) E(EADDRNOTAVAIL)
#undef E
    }
    snprintf(buf, sizeof(buf), "%d", rc);
    return buf;
}

uint32_t ip4(const char *s)
{
    struct in_addr a;
    inet_pton(AF_INET, s, &a);
    return a.s_addr;
}

struct ipvs_service svc4(int proto, const char *addr, uint16_t port,
                                const char *sched)
{
    struct ipvs_service s;
    memset(&s, 0, sizeof(s));
    s.af = AF_INET;
    s.protocol = (uint16_t)proto;
    s.addr.ip = ip4(addr);
    s.port = port;
    snprintf(s.sched_name, sizeof(s.sched_name), "%s", sched);
    s.netmask = 0xffffffff;
    return s;
}

struct ipvs_service svcfw(uint32_t mark, const char *sched)
{
    struct ipvs_service s = svc4(0, "0.0.0.0", 0, sched);
    s.fwmark = mark;
    return s;
}

struct ipvs_dest dst4(const char *addr, uint16_t port, uint32_t fwd,
                             int weight)
{
    struct ipvs_dest d;
    memset(&d, 0, sizeof(d));
    d.af = AF_INET;
    d.addr.ip = ip4(addr);
    d.port = port;
    d.conn_flags = fwd;
    d.weight = weight;
    return d;
}

const char *svcstr(const struct ipvs_service *s)
{
    static char buf[128];
    char a[INET_ADDRSTRLEN];
    if (s->fwmark) {
        snprintf(buf, sizeof(buf), "-f %u", s->fwmark);
    } else {
        inet_ntop(AF_INET, &s->addr.ip, a, sizeof(a));
        snprintf(buf, sizeof(buf), "-%c %s:%u",
                 s->protocol == IPPROTO_TCP ? 't' : s->protocol == IPPROTO_UDP ? 'u'
                 : s->protocol == IPPROTO_SCTP ? 's' : '?', a, s->port);
    }
    return buf;
}

void print_table(void)
{
    struct ipvs_service *svcs;
    size_t n;
    int rc = ipvs_get_services(h, &svcs, &n);
    printf("--- our view (%s, %zu services)\n", ename(rc), rc ? 0 : n);
    if (rc)
        return;
    for (size_t i = 0; i < n; i++) {
        struct ipvs_service *s = &svcs[i];
        char m[INET_ADDRSTRLEN];
        inet_ntop(AF_INET, &s->netmask, m, sizeof(m));
        printf("  S %s sched=%s flags=0x%x timeout=%u netmask=%s proto=%u conns=%llu\n",
               svcstr(s), s->sched_name, s->flags, s->timeout, m, s->protocol,
               (unsigned long long)s->stats.conns);
        struct ipvs_dest *d;
        size_t nd;
        rc = ipvs_get_dests(h, s, &d, &nd);
        if (rc) {
            printf("    get_dests: %s\n", ename(rc));
            continue;
        }
        for (size_t j = 0; j < nd; j++) {
            char a[INET_ADDRSTRLEN];
            inet_ntop(AF_INET, &d[j].addr.ip, a, sizeof(a));
            printf("    D %s:%u fwd=%u flags=0x%x w=%d x=%u y=%u af=%u has_af=%d kind=%d\n",
                   a, d[j].port, d[j].conn_flags & IPVS_FWD_MASK, d[j].conn_flags,
                   d[j].weight, d[j].u_threshold, d[j].l_threshold, d[j].af,
                   d[j].has_af, d[j].stats_kind);
        }
        ipvs_free(d);
    }
    ipvs_free(svcs);
}

/* Count lines of a command's output containing all given substrings. */
int count_lines(const char *cmd, const char *a, const char *b)
{
    FILE *f = popen(cmd, "r");
    char line[512];
    int n = 0;
    if (!f)
        return -1;
    while (fgets(line, sizeof(line), f))
        if (strstr(line, a) && (!b || strstr(line, b)))
            n++;
    pclose(f);
    return n;
}

/* Run a shell command, print its output, report a non-zero status. */
int sh(const char *cmd)
{
    fflush(stdout);
    int rc = system(cmd);
    fflush(stdout);
    if (rc != 0)
        printf("     [%s] exit status %d\n", cmd, rc);
    return rc;
}

double now(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

