/* kvz-image create: a new raw or qcow2 image; never overwrites. */
#include <errno.h>
#include <fcntl.h>
#include <getopt.h>
#include <stdio.h>
#include <string.h>
#include <unistd.h>

#include "image.h"
#include "image_cmds.h"
#include <jansson.h>

#include "log.h"
#include "parse.h"

struct create_args {
	enum img_fmt fmt;
	const char *path, *base, *base_fmt;
	uint64_t size;
	unsigned cluster_bits;
	bool prealloc, have_size;
};

static int parse(int argc, char **argv, struct create_args *a)
{
	static const struct option opts[] = {
		{"format", required_argument, NULL, 'f'},
		{"backing", required_argument, NULL, 'b'},
		{"backing-format", required_argument, NULL, 'F'},
		{"cluster-size", required_argument, NULL, 's'},
		{"preallocate", no_argument, NULL, 'p'},
		{0, 0, 0, 0},
	};
	int c;
	a->fmt = IMG_QCOW2;
	optind = 1;
	while ((c = getopt_long(argc, argv, "f:b:F:", opts, NULL)) != -1) {
		if (c == 'f' && !img_parse_fmt(optarg, &a->fmt))
			return kvz_error("unknown format %s (raw or qcow2)", optarg), -1;
		if (c == 'b')
			a->base = optarg;
		if (c == 'F')
			a->base_fmt = optarg;
		if (c == 's' && !img_parse_cluster_size(optarg, &a->cluster_bits))
			return kvz_error("cluster size must be a power of two from 512 to 2M"), -1;
		if (c == 'p')
			a->prealloc = true;
		if (c == '?')
			return -1;
	}
	if (optind >= argc || argc - optind > 2)
		return kvz_error("usage: create [-f raw|qcow2] [-b BASE] PATH [SIZE]"), -1;
	a->path = argv[optind];
	a->have_size = argc - optind == 2;
	if (a->have_size && !kvz_parse_size(argv[optind + 1], &a->size))
		return kvz_error("bad size %s", argv[optind + 1]), -1;
	if (a->fmt == IMG_RAW && (a->base || a->cluster_bits))
		return kvz_error("raw images take no backing file or cluster size"), -1;
	if (a->prealloc && a->fmt != IMG_RAW)
		return kvz_error("--preallocate is for raw images"), -1;
	if (!a->have_size && !a->base)
		return kvz_error("a size is needed (or a backing file to take it from)"), -1;
	return 0;
}

static int create_raw(const struct create_args *a)
{
	int fd = open(a->path, O_RDWR | O_CREAT | O_EXCL | O_CLOEXEC, 0644);
	if (fd < 0)
		return kvz_error("%s: %s", a->path, strerror(errno)), 1;
	int r = a->prealloc ? posix_fallocate(fd, 0, (off_t)a->size)
			    : (ftruncate(fd, (off_t)a->size) < 0 ? errno : 0);
	if (r == 0 && fsync(fd) < 0)
		r = errno;
	close(fd);
	if (r) {
		unlink(a->path);
		return kvz_error("%s: %s", a->path, strerror(r)), 1;
	}
	return 0;
}

/* The base must open (read-only, so probing is allowed) and gives the
 * size when none was asked for. */
static int check_base(struct create_args *a)
{
	char rel[4096];
	const char *p = a->base;
	if (a->base[0] != '/') {
		const char *slash = strrchr(a->path, '/');
		int n = slash ? snprintf(rel, sizeof(rel), "%.*s/%s", (int)(slash - a->path),
					 a->path, a->base)
			      : snprintf(rel, sizeof(rel), "%s", a->base);
		if (n < 0 || (size_t)n >= sizeof(rel))
			return kvz_error("backing path too long"), -1;
		p = rel;
	}
	struct img b;
	if (img_open(&b, p, a->base_fmt, false) < 0)
		return kvz_error("backing file %s", b.err), -1;
	if (!a->base_fmt)
		a->base_fmt = img_fmt_name(b.fmt);
	if (!a->have_size)
		a->size = b.size;
	img_close(&b);
	return 0;
}

int cmd_create(int argc, char **argv)
{
	struct create_args a = {0};
	if (parse(argc, argv, &a) < 0)
		return 1;
	if (a.fmt == IMG_RAW)
		return create_raw(&a);
	if (a.base && check_base(&a) < 0)
		return 1;
	struct qcow2_create_opts o = {a.size, a.cluster_bits, a.base, a.base_fmt};
	char err[300];
	if (qcow2_create(a.path, &o, err, sizeof(err)) < 0)
		return kvz_error("%s", err), 1;
	if (image_json)
		image_print_json(json_pack("{s:s, s:s, s:I}", "filename", a.path, "format", "qcow2",
					   "virtual-size", (json_int_t)a.size));
	return 0;
}
