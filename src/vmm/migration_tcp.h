/* tcp:HOST:PORT for manual use and benchmarks (like QEMU's plain tcp:):
 * unauthenticated, so kvzd never uses it; it passes its own authenticated
 * socket with getfd and fd:NAME instead. */
#ifndef KVZ_VMM_MIGRATION_TCP_H
#define KVZ_VMM_MIGRATION_TCP_H

#include <stddef.h>

/* "HOST:PORT" (HOST may be [v6]). Return a descriptor, or -1 with err. */
int mig_tcp_connect(const char *hostport, char *err, size_t errlen);
int mig_tcp_listen(const char *hostport, char *err, size_t errlen);

#endif
