#include "virtio_net_ctrl.h"

uint8_t virtio_net_ctrl_apply(const uint8_t *cmd, size_t len, uint16_t *status)
{
	/* ANNOUNCE_ACK has no command-specific data (5.1.6.5.4). */
	if (len != 2 || cmd[0] != VIRTIO_NET_CTRL_ANNOUNCE || cmd[1] != VIRTIO_NET_CTRL_ANNOUNCE_ACK)
		return VIRTIO_NET_ERR;
	*status &= (uint16_t)~VIRTIO_NET_S_ANNOUNCE;
	return VIRTIO_NET_OK;
}
