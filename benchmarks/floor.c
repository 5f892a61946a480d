/*
 * floor.c - the kernel's own cost for the benchmark's requests, measured
 * through the C layer only (no Python): the floor that bench.py subtracts
 * from the library's timings.
 *
 *   floor SERVICES DESTS REPEAT
 *
 * Runs in the calling process's network namespace (bench.py starts it under
 * `ip netns exec` in a fresh namespace). Builds the same table as bench.py
 * (service i: TCP 10.0.0.0+i+1 port 80, wlc; its destination j:
 * 172.16.0.0+i*DESTS+j+1 port 8080, route, weight 1), prebuilds the whole
 * ipvs_op array, and per repetition:
 *   - flushes (not timed), then times ipvs_batch() of all requests
 *     (the library packs them into the largest chunks it sends);
 *   - times a raw dump: ipvs_get_services() then ipvs_get_dests() for each
 *     service, freeing the arrays (C structs only, no conversion).
 * Prints one line per repetition: "batch SECONDS" and "dump SECONDS", and
 * checks that every request succeeded and that the dump saw everything.
 * Link with csrc/*.c (not test_*.c).
 */
#define _GNU_SOURCE
#include <arpa/inet.h>
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "libipvs.h"

static double now(void)
{
    struct timespec t;
    clock_gettime(CLOCK_MONOTONIC, &t);
    return (double)t.tv_sec + (double)t.tv_nsec * 1e-9;
}

static void fill_service(struct ipvs_service *s, size_t i)
{
    memset(s, 0, sizeof(*s));
    s->af = AF_INET;
    s->protocol = IPPROTO_TCP;
    s->addr.ip = htonl(0x0A000000u + (uint32_t)i + 1u);
    s->port = 80;
    strcpy(s->sched_name, "wlc");
    s->flags_mask = 0xFFFFFFFFu;
    s->netmask = 0xFFFFFFFFu;
}

static void fill_dest(struct ipvs_dest *d, size_t i, size_t j, size_t m)
{
    memset(d, 0, sizeof(*d));
    d->af = AF_INET;
    d->addr.ip = htonl(0xAC100000u + (uint32_t)(i * m + j) + 1u);
    d->port = 8080;
    d->conn_flags = IPVS_FWD_ROUTE;
    d->weight = 1;
}

int main(int argc, char **argv)
{
    size_t ns, nd, reps, nops, k = 0;
    struct ipvs_op *ops;
    ipvs_handle *h = NULL;
    int rc;

    if (argc != 4) {
        fprintf(stderr, "usage: %s SERVICES DESTS REPEAT\n", argv[0]);
        return 2;
    }
    ns = strtoul(argv[1], NULL, 10);
    nd = strtoul(argv[2], NULL, 10);
    reps = strtoul(argv[3], NULL, 10);
    nops = ns * (1 + nd);
    ops = calloc(nops ? nops : 1, sizeof(*ops));
    if (!ops) {
        perror("calloc");
        return 1;
    }
    for (size_t i = 0; i < ns; i++) {
        ops[k].op = IPVS_OP_ADD_SERVICE;
        fill_service(&ops[k].svc, i);
        k++;
        for (size_t j = 0; j < nd; j++) {
            ops[k].op = IPVS_OP_ADD_DEST;
            fill_service(&ops[k].svc, i);
            fill_dest(&ops[k].dest, i, j, nd);
            k++;
        }
    }

    rc = ipvs_open(&h, IPVS_BACKEND_NETLINK, -1, 60000);
    if (rc < 0) {
        fprintf(stderr, "floor: ipvs_open: %s\n", strerror(-rc));
        return 1;
    }
    for (size_t r = 0; r < reps; r++) {
        struct ipvs_service *svcs = NULL;
        size_t n = 0, total = 0;
        double t0, t1;

        rc = ipvs_flush(h);
        if (rc < 0) {
            fprintf(stderr, "floor: flush: %s\n", strerror(-rc));
            return 1;
        }
        for (size_t i = 0; i < nops; i++)
            ops[i].err = 1;
        t0 = now();
        rc = ipvs_batch(h, ops, nops);
        t1 = now();
        if (rc < 0) {
            fprintf(stderr, "floor: batch: %s\n", strerror(-rc));
            return 1;
        }
        for (size_t i = 0; i < nops; i++) {
            if (ops[i].err != 0) {
                fprintf(stderr, "floor: request %zu failed: %s (%s)\n", i,
                        strerror(-ops[i].err), ipvs_errmsg(h));
                return 1;
            }
        }
        printf("batch %.6f\n", t1 - t0);

        t0 = now();
        rc = ipvs_get_services(h, &svcs, &n);
        for (size_t i = 0; rc == 0 && i < n; i++) {
            struct ipvs_dest *d = NULL;
            size_t m = 0;
            rc = ipvs_get_dests(h, &svcs[i], &d, &m);
            total += m;
            ipvs_free(d);
        }
        t1 = now();
        ipvs_free(svcs);
        if (rc < 0) {
            fprintf(stderr, "floor: dump: %s\n", strerror(-rc));
            return 1;
        }
        if (n != ns || total != ns * nd) {
            fprintf(stderr, "floor: dump saw %zu services, %zu destinations; "
                    "expected %zu, %zu\n", n, total, ns, ns * nd);
            return 1;
        }
        printf("dump %.6f\n", t1 - t0);
        fflush(stdout);
    }
    ipvs_flush(h);
    ipvs_close(h);
    free(ops);
    return 0;
}
