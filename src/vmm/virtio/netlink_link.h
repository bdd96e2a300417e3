/* Network links over rtnetlink (libmnl): what the TAP backend needs to
 * bring a TAP up and put it on a bridge, without running `ip`. */
#ifndef KVZ_VIRTIO_NETLINK_LINK_H
#define KVZ_VIRTIO_NETLINK_LINK_H

#include <stdbool.h>
#include <stddef.h>

/* All return 0 or -errno. */
int netlink_link_up(const char *name);
int netlink_bridge_create(const char *name);
int netlink_link_set_master(const char *name, const char *master);
int netlink_link_delete(const char *name);

#endif
