/* QMP commands of the block layer (qmp_block.c), listed in qmp_control.c's
 * command table; opaque is the struct vmm_control. */
#ifndef KVZ_VMM_QMP_BLOCK_H
#define KVZ_VMM_QMP_BLOCK_H

#include <jansson.h>

#include "qmp_server.h"

json_t *qmp_cmd_block_resize(void *opaque, json_t *args, struct qmp_error *err);

#endif
