/*
 * alloc.h - the C layer's allocation calls.
 *
 * Normal builds: ipvs_malloc/ipvs_calloc/ipvs_realloc/ipvs_xfree are libc's
 * malloc/calloc/realloc/free, nothing else.
 *
 * With -DIPVS_DEBUG_ALLOC they go through counting wrappers (alloc.c):
 * "allocs" counts blocks handed out (successful malloc, calloc, and realloc of
 * NULL), "frees" counts blocks given back (free of non-NULL). A realloc of a
 * live block moves nothing in the counts. ipvs_debug_alloc_counts()
 * (libipvs.h) reads them; it returns -ENOSYS in normal builds. Every block
 * the library hands out (also those the caller frees with ipvs_free) is
 * counted, so after all handles are closed and all results freed,
 * allocs == frees.
 */
#ifndef IPVS_ALLOC_H
#define IPVS_ALLOC_H

#include <stddef.h>
#include <stdlib.h>

#ifdef IPVS_DEBUG_ALLOC
void *ipvs_dbg_malloc(size_t n);
void *ipvs_dbg_calloc(size_t nmemb, size_t size);
void *ipvs_dbg_realloc(void *p, size_t n);
void ipvs_dbg_free(void *p);
#define ipvs_malloc(n)      ipvs_dbg_malloc(n)
#define ipvs_calloc(m, n)   ipvs_dbg_calloc(m, n)
#define ipvs_realloc(p, n)  ipvs_dbg_realloc(p, n)
#define ipvs_xfree(p)       ipvs_dbg_free(p)
#else
#define ipvs_malloc(n)      malloc(n)
#define ipvs_calloc(m, n)   calloc(m, n)
#define ipvs_realloc(p, n)  realloc(p, n)
#define ipvs_xfree(p)       free(p)
#endif

#endif
