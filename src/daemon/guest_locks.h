/* One operation at a time per guest: create, start, stop, set, destroy and
 * the monitor's crash handling of one guest exclude each other, while
 * operations on different guests run side by side (a container being
 * created from the debian template for half a minute does not hold up
 * stopping another guest). */
#ifndef KVZD_GUEST_LOCKS_H
#define KVZD_GUEST_LOCKS_H

struct kvzd;

/* Blocks until no other thread holds name, then holds it. */
void guest_lock(struct kvzd *d, const char *name);
void guest_unlock(struct kvzd *d, const char *name);

#endif
