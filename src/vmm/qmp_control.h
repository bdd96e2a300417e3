/* The QMP commands kvz-vmm answers (see /work/prompts/contracts.md). */
#ifndef KVZ_VMM_QMP_CONTROL_H
#define KVZ_VMM_QMP_CONTROL_H

#include <stddef.h>

#include "vm.h"

struct virtio_devices;
struct qmp_server;

struct vmm_control {
	struct vm *vm;
	struct virtio_devices *vd;   /* NULL without virtio devices */
	struct qmp_server *qmp;      /* NULL without --qmp */
};

/* Starts the QMP server on path and hooks the VM's stop events to it. */
int qmp_control_start(struct vmm_control *ctl, const char *path, char *err, size_t errlen);
void qmp_control_stop(struct vmm_control *ctl);

#endif
