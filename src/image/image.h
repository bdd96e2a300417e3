/* kvz-image: one disk image, raw or qcow2, behind one set of calls. */
#ifndef KVZ_IMAGE_H
#define KVZ_IMAGE_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "qcow2.h"

enum img_fmt { IMG_RAW, IMG_QCOW2 };

struct img {
	enum img_fmt fmt;
	int fd;              /* raw */
	struct qcow2 *q;     /* qcow2 */
	uint64_t size;
	bool writable;
	char err[300];
};

/* "raw" or "qcow2"; false otherwise. */
bool img_parse_fmt(const char *s, enum img_fmt *f);
const char *img_fmt_name(enum img_fmt f);
/* --cluster-size: a power of two from 512 bytes to 2 MiB; gives log2. */
bool img_parse_cluster_size(const char *s, unsigned *bits);

/* Opens an existing image. fmt NULL probes the qcow2 magic, which is
 * allowed only read-only: a raw image holding a guest-written qcow2
 * header must never be taken for qcow2 when it can be written. */
int img_open(struct img *im, const char *path, const char *fmt, bool writable);
int img_read(struct img *im, void *buf, uint64_t off, size_t len);
int img_write(struct img *im, const void *buf, uint64_t off, size_t len);
int img_flush(struct img *im);
int img_close(struct img *im);
/* Whether [off, off + len) is known to read as zeros without reading. */
bool img_known_zero(struct img *im, uint64_t off, size_t len);

#endif
