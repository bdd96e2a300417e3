/* Running kvz-ct from a sealed, anonymous copy of itself (like runc after
 * CVE-2019-5736): whatever process of ours a container can see then has a
 * /proc/PID/exe that is a read-only memfd, never the host's binary. */
#ifndef KVZ_CT_SEALED_EXE_H
#define KVZ_CT_SEALED_EXE_H

#include <stddef.h>

/* Returns 0 when this process already runs from a sealed copy; otherwise
 * copies /proc/self/exe into a sealed memfd and re-executes argv from it
 * (not returning), or returns -1 with the reason in err. */
int sealed_exe_ensure(char **argv, char *err, size_t len);

#endif
