/* Anti-spoofing on a container's bridge port: the container's eth0 has a
 * fixed MAC, and an nftables table of the bridge family (one per container,
 * `kvz_NAME`) lets through only frames that carry that MAC, ARP that claims
 * that MAC and the container's own IPv4 address, and IPv4 from that
 * address. See docs/architecture.md, "kvz-ct networking". */
#ifndef KVZ_CT_NET_FILTER_H
#define KVZ_CT_NET_FILTER_H

#include <netinet/in.h>
#include <stddef.h>
#include <sys/types.h>

struct nft_ctx;

struct net_filter {
	/* Its netlink socket owns the table. libnftables opens it without
	 * close-on-exec; the supervisor runs no program once it exists. */
	struct nft_ctx *nft;
	char table[80];
};

/* The MAC of a container's eth0: locally administered unicast, derived
 * from its name and address (stable across restarts, so that neighbours'
 * ARP caches stay right). */
void net_filter_mac(const char *name, struct in_addr ip, unsigned char mac[6]);
void net_filter_mac_str(const unsigned char mac[6], char *out, size_t size);

/* From inside the network namespace of init (the container's eth0): one
 * gratuitous ARP (a broadcast request for ip from mac), so that bridges
 * and switches learn the port behind which the container now is, and
 * neighbours its address, before it sends anything itself: after a
 * restore on another host, its MAC sits behind another port. */
int net_announce(pid_t init, const unsigned char mac[6], struct in_addr ip, char *err, size_t len);

/* Installs the table for traffic entering the bridge from host-side veth
 * `port`. The table is owned by this process (NFT_TABLE_F_OWNER): the
 * kernel removes it when the process exits, even on SIGKILL. */
int net_filter_install(struct net_filter *f, const char *name, const char *port,
		       const unsigned char mac[6], struct in_addr ip, char *err, size_t len);
/* Removes the table; a no-op when none was installed. */
void net_filter_remove(struct net_filter *f);

#endif
