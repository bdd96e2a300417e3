/* The capabilities a container's processes keep: the bounding set, and no
 * inheritable or ambient capabilities (docs/architecture.md has the table of
 * what is dropped and why). */
#ifndef KVZ_CT_CAPS_H
#define KVZ_CT_CAPS_H

#include <stddef.h>

/* Drops the capabilities of the table in caps.c from the bounding set, then clears the
 * inheritable and ambient sets and keep-caps, so that nothing dropped comes
 * back through exec or a setuid change. The effective and permitted sets are
 * left alone: the caller still sets up (seccomp) with them. */
int caps_confine(char *err, size_t len);

#endif
