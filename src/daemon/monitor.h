/* The monitor thread: every sample interval it checks that each running
 * guest's supervisor is alive (crash handling), samples CPU %, memory, disk
 * and network bytes into the store, and keeps the latest sample per guest
 * and for the host in memory for list, top and /metrics. */
#ifndef KVZD_MONITOR_H
#define KVZD_MONITOR_H

#include <stdbool.h>

#include "kvzd.h"
#include "store.h"

/* The series of host totals in the store are kept under this name, which no
 * guest can have. */
#define MONITOR_HOST "@host"

int monitor_start(struct kvzd *d, char *err, size_t errlen);
/* Ends the thread after its current round. */
void monitor_stop(void);

/* Copies the latest sample of a guest (or MONITOR_HOST); false when there is
 * none yet. */
bool monitor_latest(const char *name, struct sample *out);

#endif
