/* libFuzzer target: the offline migration stream a target kvzd reads from
 * its migration port after the proof (mig_stream.h). The input's first
 * byte says whether a disk is expected and how many disks 1.. ('X') with
 * it; the rest is the stream, read from a memfd. A refused stream must
 * leave no file behind; an accepted one leaves the state (and the disks
 * when expected) within their limits. */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#include "mig_stream.h"

#define LIMIT 4096

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static uint64_t size_of(const char *path, int *exists)
{
	struct stat st;
	*exists = stat(path, &st) == 0;
	return *exists ? (uint64_t)st.st_size : 0;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	/* Once per process: where received files go. */
	static char dir[64];
	static char state[96], disk[96], extra[3][96];
	if (!dir[0]) {
		snprintf(dir, sizeof(dir), "/tmp/fuzz_migstream.XXXXXX");
		if (!mkdtemp(dir))
			abort();
		snprintf(state, sizeof(state), "%s/state", dir);
		snprintf(disk, sizeof(disk), "%s/disk", dir);
		for (int i = 0; i < 3; i++)
			snprintf(extra[i], sizeof(extra[i]), "%s/disk%d", dir, i + 1);
	}
	if (size < 1)
		return 0;
	int fd = memfd_create("stream", MFD_CLOEXEC);
	if (fd < 0 || write(fd, data + 1, size - 1) != (ssize_t)(size - 1) ||
	    lseek(fd, 0, SEEK_SET) != 0)
		abort();
	/* Bit 0: a disk expected; bits 1-2: that many disks 1.. with it. */
	struct mig_sink s = {.state_path = state, .disk_path = (data[0] & 1) ? disk : NULL,
			     .max_state = LIMIT, .max_disk = LIMIT};
	s.nextra = s.disk_path ? (data[0] >> 1) & 3 : 0;
	for (unsigned i = 0; i < s.nextra; i++) {
		s.extra_path[i] = extra[i];
		s.max_extra[i] = LIMIT / (i + 1);
	}
	char err[600];
	int rc = mig_receive(fd, &s, err, sizeof(err));
	close(fd);
	int se, de, xe[3];
	uint64_t ss = size_of(state, &se), ds = size_of(disk, &de), xs[3];
	for (int i = 0; i < 3; i++)
		xs[i] = size_of(extra[i], &xe[i]);
	if (rc == 0 && (!se || ss > LIMIT || (s.disk_path && (!de || ds > LIMIT))))
		abort();
	for (unsigned i = 0; i < 3; i++)
		if ((rc == 0 && i < s.nextra && (!xe[i] || xs[i] > s.max_extra[i])) ||
		    (xe[i] && (rc != 0 || i >= s.nextra)))
			abort();
	if (rc != 0 && (se || de || !err[0] || strchr(err, '\n')))
		abort();
	unlink(state);
	unlink(disk);
	for (int i = 0; i < 3; i++)
		unlink(extra[i]);
	return 0;
}
