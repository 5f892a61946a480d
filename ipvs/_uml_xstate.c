/* LD_PRELOAD shim for Debian's User-Mode Linux kernels before 7.x on hosts whose
 * XSAVE area is larger than the 832 bytes (x87, SSE, AVX and the XSAVE header)
 * those kernels keep per thread: hosts with AVX-512 or AMX.
 *
 * The host refuses PTRACE_SETREGSET(NT_X86_XSTATE) unless the buffer holds the
 * whole XSAVE area (EFAULT), and such a UML panics as it starts init
 * ("userspace - ptrace set fp regs failed, errno = 14").  The shim keeps the
 * whole area in a shadow buffer for each of UML's per-thread register buffers
 * (UML passes the same buffer when it saves a thread's registers and when it
 * restores them): a save reads the whole area into the shadow and hands UML
 * its part; a restore lays UML's part over the shadow and writes the whole
 * area, so the AVX-512 state of one UML thread never leaks into another's.
 * Kernels that already pass the whole area are passed through untouched. */
#define _GNU_SOURCE
#include <dlfcn.h>
#include <elf.h>
#include <stdarg.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ptrace.h>
#include <sys/types.h>
#include <sys/uio.h>

#ifndef NT_X86_XSTATE
#define NT_X86_XSTATE 0x202
#endif
#define XSAVE_PROBE 65536
#define SLOTS 8192              /* open addressing: UML threads alive at once */

typedef long (*ptrace_fn)(int, pid_t, void *, void *);

static ptrace_fn real_ptrace;
static size_t full_size;        /* the host's whole XSAVE area, once known */
static struct slot { void *key; unsigned char *buf; int filled; } slots[SLOTS];

static struct slot *shadow(void *key)
{
    size_t i = ((uintptr_t)key >> 4) % SLOTS;
    for (size_t n = 0; n < SLOTS; n++, i = (i + 1) % SLOTS) {
        if (slots[i].key == key)
            return &slots[i];
        if (slots[i].key == NULL) {
            unsigned char *buf = aligned_alloc(64, (full_size + 63) & ~(size_t)63);
            if (!buf)
                return NULL;
            slots[i].key = key;
            slots[i].buf = buf;
            slots[i].filled = 0;
            return &slots[i];
        }
    }
    return NULL;
}

static int learn_size(pid_t pid, void *addr)
{
    if (full_size)
        return 0;
    unsigned char *probe = malloc(XSAVE_PROBE);
    struct iovec io = { probe, XSAVE_PROBE };
    long r = probe ? real_ptrace(PTRACE_GETREGSET, pid, addr, &io) : -1;
    if (r == 0)
        full_size = io.iov_len;
    free(probe);
    return r == 0 ? 0 : -1;
}

long ptrace(enum __ptrace_request request, ...)
{
    va_list ap;
    va_start(ap, request);
    pid_t pid = va_arg(ap, pid_t);
    void *addr = va_arg(ap, void *);
    void *data = va_arg(ap, void *);
    va_end(ap);
    if (!real_ptrace)
        real_ptrace = (ptrace_fn)dlsym(RTLD_NEXT, "ptrace");
    int xstate = (request == PTRACE_GETREGSET || request == PTRACE_SETREGSET)
                 && (uintptr_t)addr == NT_X86_XSTATE && data != NULL;
    if (!xstate || learn_size(pid, addr) != 0)
        return real_ptrace((int)request, pid, addr, data);
    struct iovec *uml = data;
    if (uml->iov_len >= full_size)
        return real_ptrace((int)request, pid, addr, data);
    struct slot *sl = shadow(uml->iov_base);
    if (!sl)
        return real_ptrace((int)request, pid, addr, data);
    struct iovec whole = { sl->buf, full_size };
    if (request == PTRACE_GETREGSET || !sl->filled) {
        /* a save; or a restore of a buffer never saved through us (a new
         * thread): then the tracee's current area is the base */
        long r = real_ptrace(PTRACE_GETREGSET, pid, addr, &whole);
        if (r != 0)
            return request == PTRACE_GETREGSET ? r
                   : real_ptrace((int)request, pid, addr, data);
        sl->filled = 1;
        if (request == PTRACE_GETREGSET) {
            memcpy(uml->iov_base, sl->buf, uml->iov_len);
            return 0;
        }
    }
    memcpy(sl->buf, uml->iov_base, uml->iov_len);
    return real_ptrace(PTRACE_SETREGSET, pid, addr, &whole);
}
