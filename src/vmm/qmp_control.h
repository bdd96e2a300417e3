/* The QMP commands kvz-vmm answers (see /work/prompts/contracts.md). */
#ifndef KVZ_VMM_QMP_CONTROL_H
#define KVZ_VMM_QMP_CONTROL_H

#include <pthread.h>
#include <stddef.h>

#include "migration.h"
#include "vm.h"

struct virtio_devices;
struct qmp_server;

#define VMM_MAX_NAMED_FDS 8

struct vmm_control {
	struct vm *vm;
	struct virtio_devices *vd;   /* NULL without virtio devices */
	struct qmp_server *qmp;      /* NULL without --qmp */
	bool may_open_files;         /* no seccomp filter: `migrate file:` may open() */
	struct migration mig;
	/* --incoming defer: main() waits until migrate-incoming hands it the
	 * stream's descriptor. */
	pthread_mutex_t incoming_lock;
	pthread_cond_t incoming_cond;
	bool incoming_deferred;      /* set by main() before the server starts */
	int incoming_fd;             /* -1 until migrate-incoming */
	bool mig_ready;              /* mig initialized (by qmp_control_start) */
	/* Descriptors received with getfd, by name (QMP thread only). */
	struct {
		char name[64];
		int fd;              /* -1: free */
	} fds[VMM_MAX_NAMED_FDS];
};

/* The descriptor getfd stored under name, taken out of the table (the
 * caller owns it), or -1. QMP thread only. */
int vmm_control_take_fd(struct vmm_control *ctl, const char *name);

/* Starts the QMP server on path and hooks the VM's stop events to it. */
int qmp_control_start(struct vmm_control *ctl, const char *path, char *err, size_t errlen);
void qmp_control_stop(struct vmm_control *ctl);

#endif
