/* libFuzzer target: the commands a guest puts on virtio-net's control
 * queue (src/vmm/virtio/virtio_net_ctrl.c). The first two bytes are the
 * status field before the command (little-endian), the rest the chain's
 * device-readable bytes as ctrl_process() hands them over (at most
 * VIRTIO_NET_CTRL_MAX read, the length as the chain claims). The ack is
 * OK or ERR; only an exact ANNOUNCE_ACK is obeyed, and it only clears
 * VIRTIO_NET_S_ANNOUNCE. */
#include <assert.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "virtio_net_ctrl.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	if (size < 2)
		return 0;
	uint16_t before = (uint16_t)(data[0] | data[1] << 8), status = before;
	size_t len = size - 2;
	uint8_t cmd[VIRTIO_NET_CTRL_MAX];
	size_t got = len < sizeof(cmd) ? len : sizeof(cmd);
	memcpy(cmd, data + 2, got);
	if (got < 2)   /* as ctrl_process: no header, no parse */
		return 0;
	uint8_t ack = virtio_net_ctrl_apply(cmd, len, &status);
	assert(ack == VIRTIO_NET_OK || ack == VIRTIO_NET_ERR);
	bool exact = len == 2 && cmd[0] == VIRTIO_NET_CTRL_ANNOUNCE && cmd[1] == VIRTIO_NET_CTRL_ANNOUNCE_ACK;
	assert((ack == VIRTIO_NET_OK) == exact);
	assert(status == (exact ? (uint16_t)(before & ~VIRTIO_NET_S_ANNOUNCE) : before));
	return 0;
}
