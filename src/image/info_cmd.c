/* kvz-image info and check. */
#include <getopt.h>
#include <jansson.h>
#include <stdlib.h>
#include <stdio.h>
#include <string.h>
#include <sys/stat.h>

#include "image.h"
#include "image_cmds.h"
#include "log.h"
#include "parse.h"

void image_print_json(json_t *o)
{
	if (!o)
		return;
	char *s = json_dumps(o, JSON_COMPACT | JSON_PRESERVE_ORDER);
	if (s)
		printf("%s\n", s);
	free(s);
	json_decref(o);
}

static const char *one_path(int argc, char **argv, const char *cmd)
{
	if (argc != 2 || argv[1][0] == '-') {
		kvz_error("usage: %s PATH", cmd);
		return NULL;
	}
	return argv[1];
}

static json_t *describe(struct img *im, const char *path)
{
	struct stat st;
	json_int_t used = stat(path, &st) == 0 ? (json_int_t)st.st_blocks * 512 : -1;
	json_t *o = json_pack("{s:s, s:s, s:I, s:I}", "filename", path, "format",
			      img_fmt_name(im->fmt), "virtual-size", (json_int_t)im->size,
			      "actual-size", used);
	if (!o || !im->q)
		return o;
	json_object_set_new(o, "cluster-size", json_integer(qcow2_cluster_size(im->q)));
	json_object_set_new(o, "qcow2-version", json_integer(qcow2_version(im->q)));
	if (qcow2_backing_name(im->q)) {
		json_object_set_new(o, "backing-filename", json_string(qcow2_backing_name(im->q)));
		json_object_set_new(o, "backing-format", json_string(qcow2_backing_format(im->q)));
		json_object_set_new(o, "chain-depth", json_integer(qcow2_chain_depth(im->q)));
	}
	return o;
}

static void print_text(json_t *o)
{
	const char *k;
	json_t *v;
	json_object_foreach(o, k, v) {
		char sz[32];
		if (json_is_string(v))
			printf("%-17s %s\n", k, json_string_value(v));
		else if (strstr(k, "size"))
			printf("%-17s %s (%lld bytes)\n", k,
			       kvz_format_size((uint64_t)json_integer_value(v), sz, sizeof(sz)),
			       (long long)json_integer_value(v));
		else
			printf("%-17s %lld\n", k, (long long)json_integer_value(v));
	}
}

int cmd_info(int argc, char **argv)
{
	const char *path = one_path(argc, argv, "info");
	if (!path)
		return 1;
	struct img im;
	if (img_open(&im, path, NULL, false) < 0)
		return kvz_error("%s", im.err), 1;
	json_t *o = describe(&im, path);
	img_close(&im);
	if (!o)
		return kvz_error("out of memory"), 1;
	if (image_json) {
		image_print_json(o);
		return 0;
	}
	print_text(o);
	json_decref(o);
	return 0;
}

/* Exit status as qemu-img check's: 0 clean, 2 corrupt, 3 leaks only. */
int cmd_check(int argc, char **argv)
{
	const char *path = one_path(argc, argv, "check");
	if (!path)
		return 1;
	struct img im;
	if (img_open(&im, path, NULL, false) < 0)
		return kvz_error("%s", im.err), 1;
	struct qcow2_check c = {0};
	int r = im.q ? qcow2_check(im.q, &c) : 0;
	if (r < 0) {
		kvz_error("%s", qcow2_error(im.q));
		img_close(&im);
		return 1;
	}
	img_close(&im);
	if (image_json) {
		image_print_json(json_pack("{s:s, s:I, s:I, s:I, s:I, s:s}", "filename", path,
					   "corruptions", (json_int_t)c.corruptions,
					   "leaks", (json_int_t)c.leaks,
					   "allocated-clusters", (json_int_t)c.allocated,
					   "compressed-clusters", (json_int_t)c.compressed,
					   "first-problem", c.first_problem));
	} else if (c.corruptions) {
		printf("%llu corruptions, %llu leaked clusters; first: %s\n",
		       (unsigned long long)c.corruptions, (unsigned long long)c.leaks, c.first_problem);
	} else if (c.leaks) {
		printf("%llu leaked clusters (harmless: space not reused)\n",
		       (unsigned long long)c.leaks);
	} else {
		printf("No errors were found on the image.\n");
	}
	return c.corruptions ? 2 : c.leaks ? 3 : 0;
}
