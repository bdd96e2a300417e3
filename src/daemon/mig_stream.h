/* What travels on a migration port (migration.h) after the proof: for an
 * offline migration, records of [kind: 1 byte][length: 8 bytes, big-endian]
 * [length bytes]: 'S' the machine state, 'D' the disk (a VM's disk 0), each
 * at most once, 'X' a VM's disk 1.., 2.., in order, one each, then 'E'
 * with length 0 (a target from before 'X' refuses it as unknown). The target answers one byte 'K' once everything
 * is on its disk (fsync'd). The proof is MIG_PROOF_LEN lowercase hex
 * characters: the reservation's secret. */
#ifndef KVZD_MIG_STREAM_H
#define KVZD_MIG_STREAM_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#define MIG_PROOF_LEN 64
/* A shared image dir's probe: this prefix and MIG_PROOF_LEN hex characters
 * (migration_source.c makes it, migration_target.c looks for it). */
#define MIG_SHARED_PROBE_PREFIX ".kvz-shared-"

/* Called after each piece sent; false cancels. */
typedef bool (*mig_progress_fn)(void *arg, uint64_t done);

/* A fresh secret of MIG_PROOF_LEN hex characters (+ NUL). */
int mig_proof_new(char out[MIG_PROOF_LEN + 1]);
/* name is a probe's name as the source makes it (nothing else: it is
 * joined to a path on the target). */
bool mig_shared_probe_valid(const char *name);
/* got (len bytes) equals want, compared in constant time. */
bool mig_proof_equal(const char *want, const char *got, size_t len);

/* Sends path as one record of kind. */
int mig_send_file(int sock, char kind, const char *path, mig_progress_fn progress,
		  void *arg, char *err, size_t errlen);
/* Sends 'E' and waits up to timeout_ms for the target's 'K'. */
int mig_send_end(int sock, int timeout_ms, char *err, size_t errlen);

/* A VM's disks 1.. in one offline stream. */
#define MIG_EXTRA_DISKS 7

struct mig_sink {
	const char *state_path; /* where 'S' goes */
	const char *disk_path;  /* where 'D' goes; NULL: no disk expected */
	uint64_t max_state, max_disk;
	/* Where the k-th 'X' goes, within its limit; exactly nextra of them
	 * expected (0 without disk_path). */
	const char *extra_path[MIG_EXTRA_DISKS];
	uint64_t max_extra[MIG_EXTRA_DISKS];
	unsigned nextra;
};

/* Reads records from sock until 'E' into new files (mode 0600) at the
 * sink's paths, within its limits. On any error (a
 * malformed or truncated stream, a record over its limit, one repeated or
 * unexpected) the files written are removed and err says why. */
int mig_receive(int sock, const struct mig_sink *s, char *err, size_t errlen);

/* The framing, for streams of other records (ct_stream.h). */
int mig_send_header(int sock, char kind, uint64_t len);
/* -1 with err when the stream ends or breaks before a whole header. */
int mig_read_header(int sock, unsigned char *kind, uint64_t *len, char *err, size_t errlen);
/* 0, or -1 with errno (0 for the end of the stream). */
int mig_read_all(int fd, void *buf, size_t len);
/* Why the last read or write failed ("the connection was closed"). */
const char *mig_io_why(void);

/* The target's confirmation ('K'), once it has recorded the stream as
 * complete. */
int mig_ack(int sock);

#endif
