/* kvz image ...: runs kvz-image (src/image), which works on image files
 * directly and needs no kvzd. A separate program rather than code in this
 * API client: the image parsers are the part that reads hostile files,
 * and kvz stays a thin client linking none of them. */
#include <errno.h>
#include <libgen.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "cli.h"
#include "log.h"

/* Beside kvz when installed; src/image/ of the build tree otherwise. */
static int find_kvz_image(char *out, size_t len)
{
	char self[PATH_MAX];
	ssize_t n = readlink("/proc/self/exe", self, sizeof(self) - 1);
	if (n <= 0)
		return -1;
	self[n] = 0;
	const char *dir = dirname(self);
	const char *rel[] = {"kvz-image", "../image/kvz-image"};
	for (size_t i = 0; i < sizeof(rel) / sizeof(rel[0]); i++) {
		int k = snprintf(out, len, "%s/%s", dir, rel[i]);
		if (k > 0 && (size_t)k < len && access(out, X_OK) == 0)
			return 0;
	}
	return -1;
}

int cmd_image(int argc, char **argv)
{
	char path[PATH_MAX];
	char **nargv = calloc((size_t)argc + 3, sizeof(char *));
	if (!nargv)
		return kvz_error("out of memory"), 1;
	bool found = find_kvz_image(path, sizeof(path)) == 0;
	int k = 0;
	nargv[k++] = found ? path : "kvz-image";
	if (cli_json)
		nargv[k++] = "--json";
	for (int i = 1; i < argc; i++)
		nargv[k++] = argv[i];
	if (found)
		execv(path, nargv);
	else
		execvp("kvz-image", nargv);
	kvz_error("cannot run kvz-image: %s", strerror(errno));
	free(nargv);
	return 1;
}
