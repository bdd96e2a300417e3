/* Live migration, the source's job (migration.h starts it for a socket
 * or pipe): pre-copy with the dirty log (dirty_log.h), the stream of
 * state/migration_stream.h. And the target's loader of that stream. */
#ifndef KVZ_VMM_MIGRATION_LIVE_H
#define KVZ_VMM_MIGRATION_LIVE_H

#include <stddef.h>

struct migration;
struct vm;

/* Thread body; ends through migration_job_end(). */
void *live_job(struct migration *m);

/* Target: reads the stream from fd into the machine (built, never run),
 * then loads every device's state. Status and events go to m. Returns 0,
 * or -1 with one line in err (the machine must then be discarded). */
int live_incoming(struct vm *vm, struct migration *m, int fd, char *err, size_t errlen);

#endif
