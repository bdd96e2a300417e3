/* kvz-image convert: copies a raw or qcow2 image into a new one (raw or
 * qcow2, optionally compressed). The output is built under a temporary
 * name beside the destination and renamed into place only when complete:
 * an error or Ctrl-C leaves nothing behind. Zero areas are skipped. */
#include <errno.h>
#include <fcntl.h>
#include <getopt.h>
#include <jansson.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "image.h"
#include "image_cmds.h"
#include "log.h"
#include "parse.h"

/* Set by SIGINT/SIGTERM, polled by the copy loop. */
static volatile sig_atomic_t cancelled;

static void on_signal(int sig)
{
	(void)sig;
	cancelled = 1;
}

struct convert_args {
	enum img_fmt out_fmt;
	const char *src, *dst;
	unsigned cluster_bits;
	bool compress, progress;
};

static int parse(int argc, char **argv, struct convert_args *a)
{
	static const struct option opts[] = {
		{"output-format", required_argument, NULL, 'O'},
		{"compress", no_argument, NULL, 'c'},
		{"cluster-size", required_argument, NULL, 's'},
		{"progress", no_argument, NULL, 'p'},
		{0, 0, 0, 0},
	};
	bool have_fmt = false;
	int c;
	optind = 1;
	while ((c = getopt_long(argc, argv, "O:cp", opts, NULL)) != -1) {
		if (c == 'O' && !(have_fmt = img_parse_fmt(optarg, &a->out_fmt)))
			return kvz_error("unknown format %s (raw or qcow2)", optarg), -1;
		if (c == 'c')
			a->compress = true;
		if (c == 'p')
			a->progress = true;
		if (c == 's' && !img_parse_cluster_size(optarg, &a->cluster_bits))
			return kvz_error("cluster size must be a power of two from 512 to 2M"), -1;
		if (c == '?')
			return -1;
	}
	if (!have_fmt || argc - optind != 2)
		return kvz_error("usage: convert -O raw|qcow2 [-c] SRC DST"), -1;
	if (a->compress && a->out_fmt != IMG_QCOW2)
		return kvz_error("compressed output needs -O qcow2"), -1;
	a->src = argv[optind];
	a->dst = argv[optind + 1];
	return 0;
}

static int open_output(const struct convert_args *a, const char *tmp, uint64_t size,
		       struct img *out)
{
	char err[300];
	if (a->out_fmt == IMG_RAW) {
		int fd = open(tmp, O_RDWR | O_CREAT | O_EXCL | O_CLOEXEC, 0644);
		if (fd < 0 || ftruncate(fd, (off_t)size) < 0) {
			kvz_error("%s: %s", a->dst, strerror(errno));
			if (fd >= 0)
				close(fd);
			return -1;
		}
		close(fd);
		if (img_open(out, tmp, "raw", true) < 0)
			return kvz_error("%s", out->err), -1;
		return 0;
	}
	struct qcow2_create_opts o = {size, a->cluster_bits, NULL, NULL};
	if (qcow2_create(tmp, &o, err, sizeof(err)) < 0)
		return kvz_error("%s", err), -1;
	memset(out, 0, sizeof(*out));
	out->fd = -1;
	out->fmt = IMG_QCOW2;
	out->writable = true;
	out->size = size;
	/* A new file nobody sees yet: flushed once at the end, not per write. */
	if (qcow2_open(tmp, -1, QCOW2_OPEN_WRITE | QCOW2_OPEN_UNORDERED, &out->q, err,
		       sizeof(err)) < 0)
		return kvz_error("%s", err), -1;
	return 0;
}

/* Zero first byte and every byte equal to the next: memcmp's speed. */
static bool all_zero(const uint8_t *p, size_t n)
{
	return n == 0 || (p[0] == 0 && memcmp(p, p + 1, n - 1) == 0);
}

/* Writes the non-zero blocks of buf (granule bytes each; zero ones stay
 * unallocated in the new image), runs of them in one call. */
static int write_nonzero(const struct convert_args *a, struct img *out, const uint8_t *buf,
			 uint64_t off, size_t n, size_t granule)
{
	for (size_t p = 0; p < n;) {
		size_t g = n - p < granule ? n - p : granule;
		if (all_zero(buf + p, g)) {
			p += g;
			continue;
		}
		if (a->compress) {
			if (qcow2_write_compressed(out->q, (off + p) / granule, buf + p) < 0)
				return kvz_error("%s", qcow2_error(out->q)), -1;
			p += g;
			continue;
		}
		size_t run = g;
		while (p + run < n) {
			size_t h = n - p - run < granule ? n - p - run : granule;
			if (all_zero(buf + p + run, h))
				break;
			run += h;
		}
		if (img_write(out, buf + p, off + p, run) < 0)
			return kvz_error("%s", out->err), -1;
		p += run;
	}
	return 0;
}

/* 1 MiB at a time, skipping what the source knows is zero. */
static int copy(const struct convert_args *a, struct img *in, struct img *out)
{
	size_t granule = out->q ? qcow2_cluster_size(out->q) : 65536;
	size_t chunk = granule > (1u << 20) ? granule : 1u << 20;
	uint8_t *buf = malloc(chunk);
	if (!buf)
		return kvz_error("out of memory"), -1;
	int r = 0, last_pct = -1;
	for (uint64_t off = 0; off < in->size && r == 0; off += chunk) {
		if (cancelled) {
			kvz_error("cancelled");
			r = -1;
			break;
		}
		size_t n = in->size - off < chunk ? (size_t)(in->size - off) : chunk;
		int pct = (int)(off * 100 / in->size);
		if (a->progress && pct != last_pct)
			fprintf(stderr, "\r%3d%%", last_pct = pct);
		if (img_known_zero(in, off, n))
			continue;
		memset(buf, 0, chunk); /* a compressed tail cluster is whole */
		if (img_read(in, buf, off, n) < 0)
			r = -1, kvz_error("%s", in->err);
		else
			r = write_nonzero(a, out, buf, off, n, granule);
	}
	if (a->progress)
		fprintf(stderr, "\r100%%\n");
	free(buf);
	return r;
}

int cmd_convert(int argc, char **argv)
{
	struct convert_args a = {0};
	if (parse(argc, argv, &a) < 0)
		return 1;
	a.progress |= isatty(STDERR_FILENO) && !image_json;
	if (access(a.dst, F_OK) == 0)
		return kvz_error("%s exists; not overwriting it", a.dst), 1;
	struct img in, out = {.fd = -1};
	if (img_open(&in, a.src, NULL, false) < 0)
		return kvz_error("%s", in.err), 1;
	char tmp[4096];
	snprintf(tmp, sizeof(tmp), "%s.kvz-partial-%d", a.dst, (int)getpid());
	struct sigaction sa = {.sa_handler = on_signal};
	sigaction(SIGINT, &sa, NULL);
	sigaction(SIGTERM, &sa, NULL);
	int r = open_output(&a, tmp, in.size, &out);
	if (r == 0)
		r = copy(&a, &in, &out);
	if (r == 0 && img_close(&out) < 0)
		r = -1, kvz_error("%s: flush failed", a.dst);
	img_close(&out);
	img_close(&in);
	if (r == 0 && renameat2(AT_FDCWD, tmp, AT_FDCWD, a.dst, RENAME_NOREPLACE) < 0)
		r = -1, kvz_error("%s: %s", a.dst, strerror(errno));
	if (r < 0) {
		unlink(tmp);
		return 1;
	}
	if (image_json)
		image_print_json(json_pack("{s:s, s:s, s:I}", "filename", a.dst, "format",
					   img_fmt_name(a.out_fmt), "virtual-size", (json_int_t)in.size));
	return 0;
}
