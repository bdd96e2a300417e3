/* The directories API clients may take kernels and initrds from
 * (kvzd --images-dir). A path from a request is looked up beneath one of
 * them with openat2(RESOLVE_BENEATH): neither ".." nor a symlink can lead
 * out, nothing outside is ever opened or probed, and a refusal says the
 * same whether the file is missing, elsewhere or not a regular file. */
#ifndef KVZD_IMAGE_DIRS_H
#define KVZD_IMAGE_DIRS_H

#include <stdbool.h>
#include <stddef.h>

#define IMAGE_DIRS_MAX 16

struct image_dirs;

/* Opens the n directories in paths; with n == 0 the defaults instead:
 * STATE/images, /var/lib/kvz/images and /boot, those that exist. A given
 * directory that cannot be opened is an error. */
struct image_dirs *image_dirs_open(const char *const *paths, size_t n, const char *state_dir,
				   char *err, size_t errlen);
void image_dirs_free(struct image_dirs *dirs);

/* 0 with the file's path free of symlinks and ".." in out when path (an
 * absolute path) names a readable regular file beneath one of the
 * directories; -1 otherwise, for every reason alike. */
int image_dirs_resolve(const struct image_dirs *dirs, const char *path, char *out,
		       size_t outlen);

/* The same file opened read-only (O_CLOEXEC): its fd, or -1. What the fd
 * reads is the file checked, even if its name is swapped afterwards. */
int image_dirs_open_file(const struct image_dirs *dirs, const char *path, char *out,
			 size_t outlen);

/* "DIR, DIR, ..." for messages. */
void image_dirs_list(const struct image_dirs *dirs, char *out, size_t outlen);

#endif
