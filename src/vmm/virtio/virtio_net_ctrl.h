/* virtio-net's control queue commands (virtio 1.x, 5.1.6.5): what the
 * guest writes there is hostile. The device offers VIRTIO_NET_F_CTRL_VQ
 * only for VIRTIO_NET_F_GUEST_ANNOUNCE, so the one command it obeys is
 * VIRTIO_NET_CTRL_ANNOUNCE_ACK; every other one is answered
 * VIRTIO_NET_ERR, as for a feature not negotiated. Kept apart from
 * virtio_net.c so that the fuzzer links the parser alone. */
#ifndef KVZ_VIRTIO_NET_CTRL_H
#define KVZ_VIRTIO_NET_CTRL_H

#include <stddef.h>
#include <stdint.h>

#define VIRTIO_NET_F_CTRL_VQ        17
#define VIRTIO_NET_F_GUEST_ANNOUNCE 21

#define VIRTIO_NET_S_LINK_UP  1
#define VIRTIO_NET_S_ANNOUNCE 2

#define VIRTIO_NET_OK  0
#define VIRTIO_NET_ERR 1

#define VIRTIO_NET_CTRL_ANNOUNCE     3
#define VIRTIO_NET_CTRL_ANNOUNCE_ACK 0

/* Longest command read from a chain: longer ones are none of ours. */
#define VIRTIO_NET_CTRL_MAX 64

/* Applies one command: cmd holds the chain's device-readable bytes (class,
 * command, command-specific data), len their total count (may exceed
 * VIRTIO_NET_CTRL_MAX: then only that many were read). Updates *status
 * (the config space's status field). Returns the ack byte. */
uint8_t virtio_net_ctrl_apply(const uint8_t *cmd, size_t len, uint16_t *status);

#endif
