/*
 * alloc.c - allocation counters of the -DIPVS_DEBUG_ALLOC build (alloc.h).
 * In normal builds only ipvs_debug_alloc_counts() exists and says -ENOSYS.
 */
#include <errno.h>
#include <stdlib.h>

#include "alloc.h"
#include "libipvs.h"

#ifdef IPVS_DEBUG_ALLOC
static long n_allocs, n_frees;

static void *counted(void *p)
{
    if (p)
        __atomic_add_fetch(&n_allocs, 1, __ATOMIC_RELAXED);
    return p;
}

void *ipvs_dbg_malloc(size_t n) { return counted(malloc(n)); }
void *ipvs_dbg_calloc(size_t nmemb, size_t size) { return counted(calloc(nmemb, size)); }

void *ipvs_dbg_realloc(void *p, size_t n)
{
    void *q;
    if (!p)
        return counted(realloc(NULL, n));
    q = realloc(p, n);
    /* realloc(p, 0) may free p and return NULL; the library never does it */
    return q;
}

void ipvs_dbg_free(void *p)
{
    if (p)
        __atomic_add_fetch(&n_frees, 1, __ATOMIC_RELAXED);
    free(p);
}

int ipvs_debug_alloc_counts(long *allocs, long *frees)
{
    *allocs = __atomic_load_n(&n_allocs, __ATOMIC_RELAXED);
    *frees = __atomic_load_n(&n_frees, __ATOMIC_RELAXED);
    return 0;
}
#else
int ipvs_debug_alloc_counts(long *allocs, long *frees)
{
    *allocs = 0;
    *frees = 0;
    return -ENOSYS;
}
#endif
