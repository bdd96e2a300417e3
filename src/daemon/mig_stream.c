#include "mig_stream.h"

#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/random.h>
#include <sys/stat.h>
#include <unistd.h>

#include "write_all.h"

#define CHUNK (1u << 20)

int mig_proof_new(char out[MIG_PROOF_LEN + 1])
{
	unsigned char raw[MIG_PROOF_LEN / 2];
	if (getrandom(raw, sizeof(raw), 0) != (ssize_t)sizeof(raw))
		return -1;
	for (size_t i = 0; i < sizeof(raw); i++)
		snprintf(out + 2 * i, 3, "%02x", raw[i]);
	return 0;
}

bool mig_shared_probe_valid(const char *name)
{
	size_t pre = strlen(MIG_SHARED_PROBE_PREFIX);
	if (!name || strncmp(name, MIG_SHARED_PROBE_PREFIX, pre) ||
	    strlen(name + pre) != MIG_PROOF_LEN)
		return false;
	return strspn(name + pre, "0123456789abcdef") == MIG_PROOF_LEN;
}

bool mig_proof_equal(const char *want, const char *got, size_t len)
{
	if (strlen(want) != MIG_PROOF_LEN || len != MIG_PROOF_LEN)
		return false;
	unsigned char diff = 0;
	for (size_t i = 0; i < MIG_PROOF_LEN; i++)
		diff |= (unsigned char)(want[i] ^ got[i]);
	return diff == 0;
}

int mig_read_all(int fd, void *buf, size_t len)
{
	char *p = buf;
	while (len) {
		ssize_t n = read(fd, p, len);
		if (n < 0 && errno == EINTR)
			continue;
		if (n <= 0) {
			if (n == 0)
				errno = 0;
			return -1;
		}
		p += n;
		len -= (size_t)n;
	}
	return 0;
}

static void put_header(unsigned char h[9], char kind, uint64_t len)
{
	h[0] = (unsigned char)kind;
	for (int i = 0; i < 8; i++)
		h[1 + i] = (unsigned char)(len >> (56 - 8 * i));
}

int mig_send_header(int sock, char kind, uint64_t len)
{
	unsigned char h[9];
	put_header(h, kind, len);
	return kvz_write_all(sock, h, sizeof(h));
}

int mig_read_header(int sock, unsigned char *kind, uint64_t *len, char *err, size_t errlen)
{
	unsigned char h[9];
	if (mig_read_all(sock, h, sizeof(h))) {
		snprintf(err, errlen, "stream cut before its end: %s", mig_io_why());
		return -1;
	}
	*kind = h[0];
	*len = 0;
	for (int i = 0; i < 8; i++)
		*len = *len << 8 | h[1 + i];
	return 0;
}

const char *mig_io_why(void)
{
	return errno ? strerror(errno) : "the connection was closed";
}

int mig_send_file(int sock, char kind, const char *path, mig_progress_fn progress,
		  void *arg, char *err, size_t errlen)
{
	int fd = open(path, O_RDONLY | O_CLOEXEC);
	struct stat st;
	if (fd < 0 || fstat(fd, &st) < 0) {
		snprintf(err, errlen, "%s: %s", path, strerror(errno));
		if (fd >= 0)
			close(fd);
		return -1;
	}
	unsigned char h[9];
	put_header(h, kind, (uint64_t)st.st_size);
	int rc = kvz_write_all(sock, h, sizeof(h)) ? -1 : 0;
	char *chunk = rc ? NULL : malloc(CHUNK);
	uint64_t done = 0;
	while (rc == 0 && done < (uint64_t)st.st_size) {
		if (!chunk) {
			rc = -1;
			break;
		}
		ssize_t n = pread(fd, chunk, CHUNK, (off_t)done);
		if (n <= 0 || kvz_write_all(sock, chunk, (size_t)n)) {
			rc = -1;
			break;
		}
		done += (uint64_t)n;
		if (progress && !progress(arg, done)) {
			snprintf(err, errlen, "cancelled");
			rc = -2;
		}
	}
	if (rc == -1)
		snprintf(err, errlen, "sending %s: %s", path, mig_io_why());
	free(chunk);
	close(fd);
	return rc ? -1 : 0;
}

int mig_send_end(int sock, int timeout_ms, char *err, size_t errlen)
{
	unsigned char h[9];
	put_header(h, 'E', 0);
	if (kvz_write_all(sock, h, sizeof(h))) {
		snprintf(err, errlen, "sending the end: %s", mig_io_why());
		return -1;
	}
	struct pollfd p = {.fd = sock, .events = POLLIN};
	char k = 0;
	if (poll(&p, 1, timeout_ms) != 1) {
		snprintf(err, errlen, "the target did not confirm within %d s", timeout_ms / 1000);
		return -1;
	}
	if (read(sock, &k, 1) != 1 || k != 'K') {
		snprintf(err, errlen, "the target did not confirm the transfer");
		return -1;
	}
	return 0;
}

/* One record's body of len bytes into a new file at path. */
static int receive_file(int sock, const char *path, uint64_t len, char *err, size_t errlen)
{
	int fd = open(path, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0600);
	if (fd < 0) {
		snprintf(err, errlen, "cannot create %s: %s", path, strerror(errno));
		return -1;
	}
	char *chunk = malloc(CHUNK);
	int rc = chunk ? 0 : -1;
	if (!chunk)
		snprintf(err, errlen, "out of memory");
	for (uint64_t done = 0; rc == 0 && done < len;) {
		size_t n = len - done < CHUNK ? (size_t)(len - done) : CHUNK;
		if (mig_read_all(sock, chunk, n)) {
			snprintf(err, errlen, "stream cut after %llu of %llu bytes: %s",
				 (unsigned long long)done, (unsigned long long)len, mig_io_why());
			rc = -1;
		} else if (kvz_write_all(fd, chunk, n)) {
			snprintf(err, errlen, "writing %s: %s", path, strerror(errno));
			rc = -1;
		}
		done += n;
	}
	if (rc == 0 && fsync(fd) < 0) {
		snprintf(err, errlen, "fsync %s: %s", path, strerror(errno));
		rc = -1;
	}
	free(chunk);
	close(fd);
	return rc;
}

/* Which file a record of kind goes to and its limit; NULL when the kind
 * is unknown or not expected. */
static const char *record_target(const struct mig_sink *s, unsigned char kind, uint64_t *max)
{
	if (kind == 'S') {
		*max = s->max_state;
		return s->state_path;
	}
	if (kind == 'D' && s->disk_path) {
		*max = s->max_disk;
		return s->disk_path;
	}
	return NULL;
}

/* 'X': the next of disks 1.. while the sink expects more; NULL otherwise. */
static const char *extra_target(const struct mig_sink *s, unsigned *extras, uint64_t *max)
{
	if (!s->disk_path || *extras >= s->nextra)
		return NULL;
	*max = s->max_extra[*extras];
	return s->extra_path[(*extras)++];
}

static int receive_records(int sock, const struct mig_sink *s, char *err, size_t errlen)
{
	bool seen_s = false, seen_d = false;
	unsigned extras = 0;
	for (;;) {
		unsigned char h[1];
		uint64_t len = 0, max = 0;
		if (mig_read_header(sock, h, &len, err, errlen))
			return -1;
		if (h[0] == 'E')
			break;
		const char *path = h[0] == 'X' ? extra_target(s, &extras, &max)
					       : record_target(s, h[0], &max);
		if (!path) {
			snprintf(err, errlen, "unexpected record kind 0x%02x", h[0]);
			return -1;
		}
		bool *seen = h[0] == 'S' ? &seen_s : h[0] == 'D' ? &seen_d : NULL;
		if (seen && *seen) {
			snprintf(err, errlen, "record '%c' sent twice", h[0]);
			return -1;
		}
		if (len > max) {
			snprintf(err, errlen, "record '%c' of %llu bytes is over its limit %llu",
				 h[0], (unsigned long long)len, (unsigned long long)max);
			return -1;
		}
		if (seen)
			*seen = true;
		if (receive_file(sock, path, len, err, errlen))
			return -1;
	}
	if (!seen_s) {
		snprintf(err, errlen, "the stream ended without the machine state");
		return -1;
	}
	if (s->disk_path && !seen_d) {
		snprintf(err, errlen, "the stream ended without the disk");
		return -1;
	}
	if (s->disk_path && extras < s->nextra) {
		snprintf(err, errlen, "the stream ended after %u of %u further disks", extras,
			 s->nextra);
		return -1;
	}
	return 0;
}

static void unlink_all(const struct mig_sink *s)
{
	unlink(s->state_path);
	if (!s->disk_path)
		return;
	unlink(s->disk_path);
	for (unsigned i = 0; i < s->nextra && i < MIG_EXTRA_DISKS; i++)
		unlink(s->extra_path[i]);
}

int mig_receive(int sock, const struct mig_sink *s, char *err, size_t errlen)
{
	if (s->nextra > MIG_EXTRA_DISKS) {
		snprintf(err, errlen, "%u further disks expected, at most %d", s->nextra,
			 MIG_EXTRA_DISKS);
		return -1;
	}
	unlink_all(s);
	if (receive_records(sock, s, err, errlen) == 0)
		return 0;
	unlink_all(s);
	return -1;
}

int mig_ack(int sock)
{
	return kvz_write_all(sock, "K", 1);
}
