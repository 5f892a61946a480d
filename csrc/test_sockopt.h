/*
 * test_sockopt.h - what the parts of the C-level sockopt exerciser share
 * (test_sockopt.c: the checks; test_sockopt_util.c: netlink stubs, the
 * getsockopt interposition that grows the table between count and read, and
 * helpers). A test program, never part of the library.
 */
#ifndef IPVS_TEST_SOCKOPT_H
#define IPVS_TEST_SOCKOPT_H

#include <errno.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <arpa/inet.h>
#include <netinet/in.h>
#include <sys/socket.h>
#include <sys/syscall.h>
#include <unistd.h>

#include "transport.h"
#include "soparse.h"
#include "sockopt_uapi.h"

/* the getsockopt interposition (test_sockopt_util.c) */
extern int grow_left;                 /* how many GET_SERVICES/GET_DESTS to disturb */
extern uint32_t grow_seq;
extern struct so_svc_req grow_svc;    /* for GET_DESTS: the service to grow */

extern int fails, checks;
extern ipvs_handle *h;

const char *ename(int rc);

#define EXPECT(call, want) do {                                              \
        int r_ = (call);                                                     \
        checks++;                                                            \
        if (r_ != (want)) {                                                  \
            fails++;                                                         \
            printf("FAIL %s:%d %s -> %s, want %s [%s]\n", __FILE__, __LINE__, \
                   #call, ename(r_), ename(want), h ? ipvs_errmsg(h) : "");   \
        } else {                                                             \
            printf("ok   %s -> %s [%s]\n", #call, ename(r_),                 \
                   h ? ipvs_errmsg(h) : "");                                  \
        }                                                                    \
    } while (0)

#define TRUE(cond) do {                                                      \
        checks++;                                                            \
        if (!(cond)) {                                                       \
            fails++;                                                         \
            printf("FAIL %s:%d %s\n", __FILE__, __LINE__, #cond);            \
        } else {                                                             \
            printf("ok   %s\n", #cond);                                      \
        }                                                                    \
    } while (0)


uint32_t ip4(const char *s);
struct ipvs_service svc4(int proto, const char *addr, uint16_t port, const char *sched);
struct ipvs_service svcfw(uint32_t mark, const char *sched);
struct ipvs_dest dst4(const char *addr, uint16_t port, uint32_t fwd, int weight);
const char *svcstr(const struct ipvs_service *s);
void print_table(void);
int count_lines(const char *cmd, const char *a, const char *b);
int sh(const char *cmd);
double now(void);

#endif
