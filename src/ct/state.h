/* Run-directory entries of a running container: NAME.pid (the supervisor's
 * pid, flock()ed by it for as long as it lives, which is what makes names
 * unique), NAME.qmp (its QMP socket, or a symlink to the --qmp path) and
 * NAME.json (supervisor pid, init pid, qmp path, cgroups, veth, disk). */
#ifndef KVZ_CT_STATE_H
#define KVZ_CT_STATE_H

#include <jansson.h>
#include <stddef.h>

/* Takes the NAME.pid lock; fails with "already running" when another
 * supervisor holds it. Returns the fd to keep open. */
int state_lock(const char *run_dir, const char *name, char *err, size_t len);
int state_write(const char *run_dir, const char *name, json_t *state, char *err, size_t len);
/* Loads NAME.json of a running container (supervisor alive). */
json_t *state_load(const char *run_dir, const char *name, char *err, size_t len);
/* Removes NAME.json, NAME.pid and NAME.qmp. */
void state_remove(const char *run_dir, const char *name);
void state_path(const char *run_dir, const char *name, const char *ext, char *out, size_t size);

#endif
