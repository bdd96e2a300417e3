#include "net_filter.h"

#include "util.h"

#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <linux/if_ether.h>
#include <linux/if_packet.h>
#include <net/if.h>
#include <sched.h>
#include <sys/socket.h>
#include <unistd.h>
#include <nftables/libnftables.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

void net_filter_mac(const char *name, struct in_addr ip, unsigned char mac[6])
{
	uint64_t h = 0xcbf29ce484222325ULL; /* FNV-1a */
	for (const char *p = name; *p; p++)
		h = (h ^ (unsigned char)*p) * 0x100000001b3ULL;
	const unsigned char *a = (const unsigned char *)&ip.s_addr;
	for (int i = 0; i < 4; i++)
		h = (h ^ a[i]) * 0x100000001b3ULL;
	mac[0] = 0x0a; /* locally administered (bit 1), unicast (bit 0 clear) */
	for (int i = 1; i < 6; i++)
		mac[i] = (unsigned char)(h >> (8 * i));
}

void net_filter_mac_str(const unsigned char mac[6], char *out, size_t size)
{
	snprintf(out, size, "%02x:%02x:%02x:%02x:%02x:%02x", mac[0], mac[1], mac[2], mac[3], mac[4],
		 mac[5]);
}

/* Why each rule: a frame from the port with another source MAC would teach
 * the bridge and the neighbours a MAC that is not the container's; ARP
 * must claim the container's MAC and address (0.0.0.0 is a probe, which
 * updates no cache); IPv4 must come from the container's address. The
 * container has no IPv6 configuration and no other protocol: the rest is
 * dropped. The counter lets an administrator (and the tests) see drops. */
static int ruleset(char *buf, size_t size, const char *table, const char *port, const char *mac,
		   const char *ip)
{
	return snprintf(buf, size,
		"table bridge %s {\n"
		"  flags owner\n"
		"  counter spoofed {}\n"
		"  chain from_ct {\n"
		"    ether saddr != %s counter name spoofed drop\n"
		"    arp htype 1 arp ptype ip arp hlen 6 arp plen 4 arp operation { request, reply }"
		" arp saddr ether %s arp saddr ip { %s, 0.0.0.0 } accept\n"
		"    ip saddr %s accept\n"
		"    counter name spoofed drop\n"
		"  }\n"
		"  chain prerouting {\n"
		"    type filter hook prerouting priority -300; policy accept;\n"
		"    iif \"%s\" jump from_ct\n"
		"  }\n"
		"}\n",
		table, mac, mac, ip, ip, port);
}

static int run(struct net_filter *f, const char *cmd, char *err, size_t len)
{
	if (nft_run_cmd_from_buffer(f->nft, cmd) == 0)
		return 0;
	const char *why = nft_ctx_get_error_buffer(f->nft);
	snprintf(err, len, "%.*s", (int)strcspn(why ? why : "", "\n"), why ? why : "");
	return -1;
}

int net_filter_install(struct net_filter *f, const char *name, const char *port,
		       const unsigned char mac[6], struct in_addr ip, char *err, size_t len)
{
	char macs[18], ips[INET_ADDRSTRLEN], cmd[2048], why[512];
	f->table[0] = 0;
	f->nft = nft_ctx_new(NFT_CTX_DEFAULT);
	if (!f->nft || nft_ctx_buffer_output(f->nft) < 0 || nft_ctx_buffer_error(f->nft) < 0) {
		snprintf(err, len, "cannot set up nftables for '%s'", name);
		return -1;
	}
	snprintf(f->table, sizeof(f->table), "kvz_%s", name);
	net_filter_mac_str(mac, macs, sizeof(macs));
	inet_ntop(AF_INET, &ip, ips, sizeof(ips));
	/* A table of that name not owned by a live process (made by hand, or
	 * by a kvz-ct without owner tables) goes; a live owner's is refused by
	 * the kernel, and the add below then fails. */
	snprintf(cmd, sizeof(cmd), "delete table bridge %s", f->table);
	run(f, cmd, why, sizeof(why));
	ruleset(cmd, sizeof(cmd), f->table, port, macs, ips);
	if (run(f, cmd, why, sizeof(why)) < 0) {
		snprintf(err, len, "cannot install the anti-spoofing table bridge %s: %s", f->table, why);
		f->table[0] = 0;
		return -1;
	}
	return 0;
}

void net_filter_remove(struct net_filter *f)
{
	char cmd[128], why[256];
	if (f->nft && f->table[0]) {
		snprintf(cmd, sizeof(cmd), "delete table bridge %s", f->table);
		run(f, cmd, why, sizeof(why));
	}
	if (f->nft)
		nft_ctx_free(f->nft); /* closing its socket would remove the table anyway */
	f->nft = NULL;
	f->table[0] = 0;
}

struct announce {
	int ns;                  /* the container's network namespace */
	unsigned char frame[60]; /* the Ethernet minimum, zero-padded */
};

/* In a child of ours (run_in_child): enters the namespace and sends. */
static int send_announce(void *arg, int err_fd)
{
	const struct announce *a = arg;
	if (setns(a->ns, CLONE_NEWNET) < 0) {
		dprintf(err_fd, "setns: %s", strerror(errno));
		return 1;
	}
	int fd = socket(AF_PACKET, SOCK_RAW | SOCK_CLOEXEC, htons(ETH_P_ARP));
	unsigned idx = if_nametoindex("eth0");
	struct sockaddr_ll to = {.sll_family = AF_PACKET, .sll_protocol = htons(ETH_P_ARP),
				 .sll_ifindex = (int)idx, .sll_halen = 6};
	memset(to.sll_addr, 0xff, 6);
	if (fd < 0 || !idx ||
	    sendto(fd, a->frame, sizeof(a->frame), 0, (struct sockaddr *)&to, sizeof(to)) < 0) {
		dprintf(err_fd, "eth0: %s", strerror(errno));
		return 1;
	}
	close(fd);
	return 0;
}

int net_announce(pid_t init, const unsigned char mac[6], struct in_addr ip, char *err, size_t len)
{
	char path[64], msg[256];
	snprintf(path, sizeof(path), "/proc/%d/ns/net", (int)init);
	struct announce a = {.ns = open(path, O_RDONLY | O_CLOEXEC)};
	if (a.ns < 0) {
		snprintf(err, len, "cannot open %s: %s", path, strerror(errno));
		return -1;
	}
	unsigned char *f = a.frame;
	memset(f, 0xff, 6);                  /* broadcast */
	memcpy(f + 6, mac, 6);
	f[12] = 0x08, f[13] = 0x06;          /* ARP */
	static const unsigned char req[] = {0, 1, 8, 0, 6, 4, 0, 1}; /* Ethernet/IPv4, request */
	memcpy(f + 14, req, sizeof(req));
	memcpy(f + 22, mac, 6);              /* sender: the container */
	memcpy(f + 28, &ip.s_addr, 4);
	memcpy(f + 38, &ip.s_addr, 4);       /* target: itself (target MAC 0) */
	int rc = run_in_child(send_announce, &a, msg, sizeof(msg));
	close(a.ns);
	if (rc < 0)
		snprintf(err, len, "cannot announce the container's address: %s", msg);
	return rc;
}
