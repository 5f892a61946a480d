/*
 * fuzz_soparse.c - libFuzzer target for csrc/soparse.c.
 *
 * The input is one getsockopt result buffer (seed corpus fuzz/corpus/soparse,
 * real kernel replies recorded by fuzz/capture.c). Every decoder gets it, the
 * table decoders with several output capacities (0, 1, a few, and as many as
 * the header claims, like sockopt.c), each output array allocated with exactly
 * that many entries so that ASan sees any write past it.
 */
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "soparse.h"

#define CHECK(c) do { if (!(c)) abort(); } while (0)

static void services(const uint8_t *data, size_t size, size_t cap)
{
    struct ipvs_service *out = cap ? malloc(cap * sizeof(*out)) : NULL;
    size_t n = 7, slots = 7;
    int r = soparse_services(data, size, out, cap, &n, &slots);
    if (r == 0) {
        CHECK(n <= slots);
        CHECK(soparse_services_size(slots) == size);
        for (size_t i = 0; i < n && i < cap; i++)
            CHECK(memchr(out[i].sched_name, 0, sizeof(out[i].sched_name)));
    } else {
        CHECK(n == 0 && slots == 0);
    }
    free(out);
}

static void dests(const uint8_t *data, size_t size, size_t cap)
{
    struct ipvs_dest *out = cap ? malloc(cap * sizeof(*out)) : NULL;
    size_t n = 7, slots = 7;
    int r = soparse_dests(data, size, out, cap, &n, &slots);
    if (r == 0) {
        CHECK(n <= slots);
        CHECK(soparse_dests_size(slots) == size);
    } else {
        CHECK(n == 0 && slots == 0);
    }
    free(out);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    struct ipvs_info info;
    struct ipvs_service svc;
    struct ipvs_timeouts to;
    struct ipvs_daemon dm[2];
    uint32_t num;
    size_t n, slots = 0;

    (void)soparse_info(data, size, &info, &num);
    (void)soparse_info(data, size, &info, NULL);
    (void)soparse_version(data, size, &info);
    if (soparse_service_entry(data, size, &svc, &num) == 0)
        CHECK(memchr(svc.sched_name, 0, sizeof(svc.sched_name)));
    (void)soparse_service_entry(data, size, &svc, NULL);
    (void)soparse_timeouts(data, size, &to);
    if (soparse_daemons(data, size, dm, &n) == 0) {
        CHECK(n <= 2);
        for (size_t i = 0; i < n; i++)
            CHECK(memchr(dm[i].mcast_ifn, 0, sizeof(dm[i].mcast_ifn)));
    }

    services(data, size, 0);
    services(data, size, 1);
    services(data, size, 3);
    {
        struct ipvs_service probe;
        size_t nn;
        /* the caller's capacity = the slot count it asked for */
        if (soparse_services(data, size, &probe, 1, &nn, &slots) == 0 && slots < 4096)
            services(data, size, slots);
    }
    dests(data, size, 0);
    dests(data, size, 1);
    dests(data, size, 3);
    {
        struct ipvs_dest probe;
        size_t nn;
        if (soparse_dests(data, size, &probe, 1, &nn, &slots) == 0 && slots < 4096)
            dests(data, size, slots);
    }
    (void)soparse_services_size(size);
    (void)soparse_dests_size(size);
    return 0;
}
