/* The QMP watcher thread: holds one QMP connection to each running guest's
 * supervisor and listens for its events. When a supervisor announces
 * SHUTDOWN or its socket closes, the guest's end is handled at once instead
 * of at the monitor's next round, and the SHUTDOWN data tells a clean end
 * (stopped) from a failure (crashed) even for a supervisor kvzd adopted and
 * so cannot wait for. */
#ifndef KVZD_QMP_WATCH_H
#define KVZD_QMP_WATCH_H

#include <stdbool.h>
#include <stddef.h>
#include <sys/types.h>

#include "kvzd.h"

int qmp_watch_start(struct kvzd *d, char *err, size_t errlen);
void qmp_watch_stop(void);

/* What the supervisor pid of guest name said in its SHUTDOWN event: false
 * when it sent none; else *clean and a line in detail. */
bool qmp_watch_shutdown(const char *name, pid_t pid, bool *clean, char *detail, size_t len);

#endif
