/* The snapshot stream (docs/snapshot-format.md): a header, guest RAM at a
 * fixed page-aligned offset (all-zero pages left as holes, so the file is
 * sparse and a restore maps it instead of reading it), then one checksummed
 * section per state registry entry. Written by a writer on a file
 * descriptor and read back by a reader that trusts nothing it reads.
 *
 * Transport-neutral by design: the writer takes RAM through a page-run
 * iterator (a later pre-copy feeds it dirty bitmaps) and sections as byte
 * strings; only the placement of RAM is specific to a seekable file. */
#ifndef KVZ_VMM_SNAPSHOT_FILE_H
#define KVZ_VMM_SNAPSHOT_FILE_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "pagemap.h"
#include "state_buf.h"
#include "state_registry.h"

#define SNAP_MAGIC "KVZSNAP\0"
#define SNAP_FORMAT_VERSION 1
#define SNAP_PAGE 4096u
#define SNAP_HEADER_SIZE 64u
#define SNAP_RAM_ALIGN (2u << 20)       /* huge-page aligned RAM image */
#define SNAP_SECTION_HEADER 48u
#define SNAP_SECTION_MAX (64u << 20)    /* no section is near this */
#define SNAP_MAX_SECTIONS 4096u

/* Which pages to write: runs of pages in RAM offsets (the memfd's order:
 * low RAM, then RAM above 4 GiB). `bitmap` NULL means every page. */
struct ram_iter {
	uint64_t size;             /* bytes of RAM */
	const uint64_t *bitmap;    /* one bit per page, or NULL */
	int data_fd;               /* >= 0: a file whose holes are zero (memfd): skipped unread */
	/* Or anonymous RAM: pages it says hold nothing are skipped unread. */
	struct pagemap_reader *pagemap;
	uint64_t pos;
};

void ram_iter_init(struct ram_iter *it, uint64_t size, const uint64_t *bitmap, int data_fd);
/* Skips the pages pm says were never populated (with no bitmap and no
 * data_fd). */
void ram_iter_use_pagemap(struct ram_iter *it, struct pagemap_reader *pm);
/* Next run [*off, *off + *len) to consider, at most max_len bytes. Returns
 * false at the end. */
bool ram_iter_next(struct ram_iter *it, uint64_t max_len, uint64_t *off, uint64_t *len);

/* Progress of a save, read by other threads (query-migrate). */
struct snap_progress {
	uint64_t total;            /* bytes of RAM + sections: atomic */
	uint64_t done;             /* atomic */
	int cancel;                /* atomic: set to stop the save */
};

struct snap_writer {
	int fd;
	uint64_t ram_offset;
	uint64_t ram_size;
	uint64_t sections_offset;
	uint64_t pos;              /* where the next section goes */
	uint32_t nsections;
	struct state_buf pending;  /* sections, written in large blocks */
	struct snap_progress *progress;
	uint64_t ram_read;         /* bytes of guest RAM read (zero-checked) */
	uint64_t ram_written;      /* of those, bytes written (not zero) */
};

/* fd must be a regular file: it is truncated and laid out from offset 0. */
int snap_writer_begin(struct snap_writer *w, int fd, uint64_t ram_size,
		      struct snap_progress *progress, char *err, size_t errlen);
/* Writes the pages the iterator yields from ram (all-zero pages become
 * holes). Large pwrite()s straight from guest memory. */
int snap_writer_ram(struct snap_writer *w, const uint8_t *ram, struct ram_iter *it,
		    char *err, size_t errlen);
int snap_writer_section(struct snap_writer *w, const struct state_entry *e,
			const void *data, size_t len, char *err, size_t errlen);
/* Flushes, then writes the header last: a file whose save did not finish
 * has no valid header and is refused. */
int snap_writer_finish(struct snap_writer *w, char *err, size_t errlen);
void snap_writer_free(struct snap_writer *w);

struct snap_header {
	uint64_t ram_offset;
	uint64_t ram_size;
	uint64_t sections_offset;
	uint64_t sections_length;
	uint32_t nsections;
};

struct snap_section {
	char name[STATE_NAME_MAX];
	uint32_t instance;
	uint32_t version;
	uint32_t length;
	uint8_t *data;             /* malloc'd, checksum verified */
};

struct snap_sections {
	struct snap_section *s;
	uint32_t n;
};

/* Shared with the live stream (migration_stream.h): a section's header
 * (magic, name, instance, version, length, data and header checksums), and
 * its checked decoding from buf at *at (advanced past it; s->data malloc'd). */
void snap_section_header(uint8_t h[SNAP_SECTION_HEADER], const struct state_entry *e,
			 const void *data, size_t len);
int snap_parse_section(const uint8_t *buf, uint64_t len, uint64_t *at, uint32_t idx,
		       struct snap_section *s, char *err, size_t errlen);
bool snap_page_is_zero(const uint8_t *page);

/* Reads and checks the header against the file's size. */
int snap_read_header(int fd, struct snap_header *h, char *err, size_t errlen);
/* Reads every section and verifies its checksums, before anything is
 * applied. err names the section and the reason. */
int snap_read_sections(int fd, const struct snap_header *h, struct snap_sections *out,
		       char *err, size_t errlen);
void snap_sections_free(struct snap_sections *s);
/* Every registry entry must have exactly one section of its version, and
 * every section an entry; then each is loaded in registry order. */
int snap_sections_apply(const struct snap_sections *s, struct state_registry *r,
			char *err, size_t errlen);

#endif
