/* Helpers shared by the subcommands. */
#ifndef KVZ_CT_CMD_COMMON_H
#define KVZ_CT_CMD_COMMON_H

#include <stddef.h>

/* Runs fn(dir, arg) in a child process that has the image mounted on dir
 * in a mount namespace of its own, so that nothing stays mounted whatever
 * happens. fn's error text comes back in err. */
int run_mounted(const char *image, const char *dir,
		int (*fn)(const char *dir, void *arg, char *err, size_t len), void *arg,
		char *err, size_t len);

/* Dies with a clear message unless name is a valid container name. */
void require_name(const char *name);

#endif
