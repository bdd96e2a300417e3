/* virtio-balloon (virtio spec 5.5): inflate/deflate queues, the statistics
 * queue and deflate-on-OOM. Inflated pages go back to the host. */
#ifndef KVZ_VIRTIO_BALLOON_H
#define KVZ_VIRTIO_BALLOON_H

#include <jansson.h>
#include <stdbool.h>
#include <stdint.h>

#include "virtio_pci.h"

#define VIRTIO_BALLOON_NSTATS 10

struct qmp_server;

struct virtio_balloon {
	struct virtio_pci vp;
	uint8_t config[8];            /* le32 num_pages (target), le32 actual */
	uint32_t target_pages;        /* pages the host wants in the balloon */
	uint32_t actual_pages;        /* pages the guest says it has given */
	bool actual_changed;          /* BALLOON_CHANGE owed (sent without the lock) */
	uint64_t stats[VIRTIO_BALLOON_NSTATS];
	uint16_t stats_valid;         /* bit per tag the guest reported */
	bool stats_held;              /* we hold the guest's stats buffer */
	uint16_t stats_head;          /* ... with this head */
	uint64_t discarded_pages;     /* counter: pages given back to the host */
	bool paused;                  /* machine paused: the stats buffer stays held */
	struct qmp_server *qmp;       /* where BALLOON_CHANGE goes; may be NULL */
	struct virtq_elem elem;       /* I/O thread only */
};

/* deflate_on_oom offers VIRTIO_BALLOON_F_DEFLATE_ON_OOM: the guest may take
 * pages back under memory pressure, and (Linux) then leaves MemTotal alone
 * while inflated. */
struct virtio_balloon *virtio_balloon_create(const struct vmm_context *ctx, bool deflate_on_oom,
					     char *err, size_t errlen);
void virtio_balloon_destroy(struct virtio_balloon *b);

/* Target guest RAM in bytes (QMP "balloon"). Returns 0 or -1 with err. */
int virtio_balloon_set_target(struct virtio_balloon *b, uint64_t bytes, char *err, size_t errlen);
/* {"actual": BYTES, "stat-...": N...} (QMP "query-balloon"); also asks the
 * guest for fresh statistics for the next query. */
json_t *virtio_balloon_query(struct virtio_balloon *b);
void virtio_balloon_set_qmp(struct virtio_balloon *b, struct qmp_server *qmp);

#endif
