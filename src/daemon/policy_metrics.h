/* Metrics of policy rules that the monitor's latest sample does not hold:
 * a container's memory pressure (cgroup v2 PSI) and network rates from
 * kvzd's stored samples. The parsers are pure, for unit tests. */
#ifndef KVZD_POLICY_METRICS_H
#define KVZD_POLICY_METRICS_H

#include <stdbool.h>
#include <stddef.h>

#include <jansson.h>

#include <sys/types.h>

/* Why this host has no memory pressure of containers (cgroup v1: no
 * memory.pressure), or NULL when it has. */
const char *policy_psi_missing(void);
/* "some avg10=X ..." of a PSI file's text: 0 with X, or -1. */
int policy_psi_some_avg10(const char *text, double *out);
/* The container's cgroup directory from its kvz-ct supervisor's
 * /proc/PID/cgroup text: the supervisor sits in OWN/kvz/_supervisors and
 * the container in OWN/kvz/NAME (src/ct/cgroup_v2.c). 0, or -1 when the
 * text has no such v2 line. */
int policy_ct_cgroup_dir(const char *proc_cgroup, const char *name, char *buf, size_t len);
/* The memory pressure (some avg10, percent) of container guest whose
 * kvz-ct supervisor is sup; 0, or -1 when it cannot be read. */
int policy_mem_pressure(const char *guest, pid_t sup, double *out);
/* Bytes/s received (rx) or sent between the last two of samples (oldest
 * first, {ts_ms, net_rx, net_tx}); -1 when there are not two or a counter
 * went back (the guest restarted). */
int policy_net_rate(json_t *samples, bool rx, double *out);

#endif
