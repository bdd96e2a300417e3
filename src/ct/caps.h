/* The capabilities a container's processes keep: the bounding set, and no
 * inheritable or ambient capabilities (docs/architecture.md has the table of
 * what is dropped and why). */
#ifndef KVZ_CT_CAPS_H
#define KVZ_CT_CAPS_H

#include <stddef.h>
#include <stdint.h>

/* --cap-add/--cap-drop: changes to the default drop list, bit N for
 * capability N; add wins over drop. */
struct caps_change {
	uint64_t add, drop;
};

/* "sys_admin" or "CAP_SYS_ADMIN" -> a one-bit mask; "all" -> every bit;
 * 0 when unknown. */
uint64_t caps_mask_of(const char *name);
/* Drops the default list (the table in caps.c) with ch applied from the
 * bounding set, then clears the inheritable and ambient sets and keep-caps,
 * so that nothing dropped comes back through exec or a setuid change. The
 * effective and permitted sets are left alone: the caller still sets up
 * (seccomp) with them. */
int caps_confine(const struct caps_change *ch, char *err, size_t len);

#endif
