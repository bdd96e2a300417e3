/* kvz-image resize: grows an image (shrinking would cut guest data and is
 * refused). The format must be given: a writable image is never probed. */
#include <errno.h>
#include <getopt.h>
#include <jansson.h>
#include <stdio.h>
#include <string.h>
#include <unistd.h>

#include "image.h"
#include "image_cmds.h"
#include "log.h"
#include "parse.h"

int cmd_resize(int argc, char **argv)
{
	const char *fmt = NULL;
	int c;
	optind = 1;
	while ((c = getopt(argc, argv, "f:")) != -1) {
		if (c == 'f')
			fmt = optarg;
		else
			return 1;
	}
	if (!fmt || argc - optind != 2)
		return kvz_error("usage: resize -f raw|qcow2 PATH [+]SIZE"), 1;
	const char *path = argv[optind], *s = argv[optind + 1];
	bool rel = *s == '+';
	uint64_t size;
	if (!kvz_parse_size(s + rel, &size))
		return kvz_error("bad size %s", s), 1;
	struct img im;
	if (img_open(&im, path, fmt, true) < 0)
		return kvz_error("%s", im.err), 1;
	if (rel)
		size += im.size;
	int r = 0;
	if (size < im.size)
		r = -1, kvz_error("%s: shrinking is not supported", path);
	else if (im.q && qcow2_resize(im.q, size) < 0)
		r = -1, kvz_error("%s", qcow2_error(im.q));
	else if (!im.q && ftruncate(im.fd, (off_t)size) < 0)
		r = -1, kvz_error("%s: %s", path, strerror(errno));
	if (img_close(&im) < 0 && r == 0)
		r = -1, kvz_error("%s: flush failed", path);
	if (r == 0 && image_json)
		image_print_json(json_pack("{s:s, s:I}", "filename", path, "virtual-size",
					   (json_int_t)size));
	return r < 0 ? 1 : 0;
}
