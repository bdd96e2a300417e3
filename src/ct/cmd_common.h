/* Helpers shared by the subcommands. */
#ifndef KVZ_CT_CMD_COMMON_H
#define KVZ_CT_CMD_COMMON_H

#include <stddef.h>
#include <stdint.h>

/* Runs fn(dir, arg) in a child process that has the image mounted on dir
 * in a mount namespace of its own, so that nothing stays mounted whatever
 * happens. fn's error text comes back in err. */
int run_mounted(const char *image, const char *dir,
		int (*fn)(const char *dir, void *arg, char *err, size_t len), void *arg,
		char *err, size_t len);

/* Makes CTROOT/NAME: its id range, a btrfs image of size bytes filled from
 * the tarball; on failure removes what it made (cmd_create.c). */
int ct_make_private(const char *ct_root, const char *name, uint64_t size, const char *tarball,
		    char *err, size_t len);
/* Frees the id range of the private area dir and removes it. */
int ct_remove_private(const char *dir);

/* Dies with a clear message unless name is a valid container name. */
void require_name(const char *name);

#endif
