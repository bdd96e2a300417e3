/* A container's migration stream: what travels on the migration port
 * (migration.h) after the proof when a container moves, in mig_stream.h's
 * framing ([kind: 1][length: 8, big-endian][length bytes]):
 *
 *   'D' length 8: the private image's size (u64 BE); once, first. The
 *       target makes a sparse file of that size (at most max_disk).
 *   'B' [offset: u64 BE][data]: a range of the private image (within its
 *       size): its data extents while the container runs, then what
 *       changed since while it is frozen.
 *   'C' length 1: [K]; K + 1 CRIU page server sessions follow on the
 *       socket as they are (K pre-dumps, then the final dump); once.
 *   'I' [name length: 1][name][data]: a file of the final dump's images
 *       (after 'C'): a plain name of [A-Za-z0-9._-], not starting with
 *       '.', at most CT_IMAGE_MAX_BYTES, at most CT_IMAGES_MAX of them.
 *   'E' length 0: the end. The target restores the container and answers
 *       'K' once it runs.
 */
#ifndef KVZD_CT_STREAM_H
#define KVZD_CT_STREAM_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#define CT_IMAGES_MAX 4096
#define CT_IMAGE_MAX_BYTES (64ull << 20)
#define CT_IMAGE_NAME_MAX 96
/* The unit the private image is compared in. */
#define CT_BLOCK (64u << 10)

struct ct_sink {
	int images_fd;         /* the directory the 'I' files go into */
	int disk_fd;           /* the private image, empty, opened for writing */
	uint64_t max_disk;
	/* At 'C': receives the K + 1 page server sessions on sock. */
	int (*pages)(void *arg, int sock, int pre, char *err, size_t len);
	void *arg;
};

/* Reads records until 'E'. -1 with err (one line) on a malformed,
 * truncated or out-of-order stream; the caller removes what was made. */
int ct_stream_receive(int sock, const struct ct_sink *s, char *err, size_t len);

/* The sending side. */
struct ct_disk_sums {
	uint64_t size;
	uint64_t nblocks;
	uint64_t *sum; /* per CT_BLOCK block as last sent */
};

typedef bool (*ct_progress_fn)(void *arg, uint64_t bytes);

/* 'D' and the image's data extents as 'B', noting each block's sum. */
int ct_send_disk(int sock, int fd, struct ct_disk_sums *sums, ct_progress_fn progress, void *arg,
		 uint64_t *sent, char *err, size_t len);
/* 'B' for each block whose sum changed since ct_send_disk. */
int ct_send_disk_delta(int sock, int fd, struct ct_disk_sums *sums, uint64_t *sent, char *err,
		       size_t len);
void ct_disk_sums_free(struct ct_disk_sums *sums);
/* 'I' for each regular file at the top of the directory dfd (the logs
 * excepted). */
int ct_send_images(int sock, int dfd, uint64_t *sent, char *err, size_t len);
/* Whether name may be an image's file name. */
bool ct_image_name_ok(const char *name, size_t n);

#endif
