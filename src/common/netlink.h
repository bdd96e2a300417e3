/* rtnetlink (libmnl) for container and VM networking: bridges, veth pairs,
 * addresses and routes. Every call acts on the caller's network namespace. */
#ifndef KVZ_NETLINK_H
#define KVZ_NETLINK_H

#include <netinet/in.h>
#include <stdbool.h>
#include <stddef.h>
#include <sys/types.h>

/* Creates bridge br (up) when missing; *created tells whether it did. */
int nl_bridge_ensure(const char *br, bool *created, char *err, size_t len);
/* veth pair host <-> peer; the peer is created in the network namespace of
 * peer_pid under the name peer, with MAC peer_mac (6 bytes; NULL: random). */
int nl_veth_create(const char *host, const char *peer, pid_t peer_pid, const unsigned char *peer_mac,
		   char *err, size_t len);
int nl_link_set_master(const char *ifname, const char *master, char *err, size_t len);
int nl_link_up(const char *ifname, char *err, size_t len);
int nl_link_down(const char *ifname, char *err, size_t len);
int nl_link_del(const char *ifname, char *err, size_t len);
int nl_addr_add(const char *ifname, struct in_addr addr, unsigned prefix, char *err, size_t len);
int nl_route_default(const char *ifname, struct in_addr gw, char *err, size_t len);

#endif
