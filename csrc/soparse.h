/*
 * soparse.h - decoding of the legacy IPVS sockopt replies into the public
 * structs of libipvs.h. Pure functions: no I/O, no allocation, no global
 * state; every input byte may be hostile (usable as a fuzz target).
 *
 * All functions return 0 or a negative errno (-EPROTO for a reply whose size
 * or content is not what the interface defines).
 */
#ifndef IPVS_SOPARSE_H
#define IPVS_SOPARSE_H

#include <stddef.h>
#include <stdint.h>
#include "libipvs.h"

/* Byte size of a GET_SERVICES / GET_DESTS argument with n table entries, as
 * the kernel computes it (header + n * entry); 0 when it would not fit an int
 * (the kernel's length type). */
size_t soparse_services_size(size_t n);
size_t soparse_dests_size(size_t n);

/* GET_INFO reply: version and connection table size; *num_services (may be
 * NULL) gets the number of services of the namespace, IPv6 ones included. */
int soparse_info(const void *buf, size_t len, struct ipvs_info *out,
                 uint32_t *num_services);

/* GET_VERSION reply: "IP Virtual Server version X.Y.Z (size=N)". */
int soparse_version(const void *buf, size_t len, struct ipvs_info *out);

/* One service entry (GET_SERVICE reply). *num_dests may be NULL. */
int soparse_service_entry(const void *buf, size_t len, struct ipvs_service *out,
                          uint32_t *num_dests);

/* GET_SERVICES reply. The kernel fills the table from the start and leaves
 * the rest as the caller zeroed it, without reporting how many it wrote (and
 * silently stops when the table is full). *n = number of filled entries;
 * *slots = the table's size from its header; the first min(*n, cap) entries
 * are decoded into out (out may be NULL when cap is 0). len must be exactly
 * soparse_services_size(*slots). */
int soparse_services(const void *buf, size_t len, struct ipvs_service *out,
                     size_t cap, size_t *n, size_t *slots);

/* GET_DESTS reply; same conventions. */
int soparse_dests(const void *buf, size_t len, struct ipvs_dest *out,
                  size_t cap, size_t *n, size_t *slots);

/* GET_TIMEOUT reply. */
int soparse_timeouts(const void *buf, size_t len, struct ipvs_timeouts *out);

/* GET_DAEMON reply (master, backup): running daemons only, in out[0..*n). */
int soparse_daemons(const void *buf, size_t len, struct ipvs_daemon out[2],
                    size_t *n);

#endif
