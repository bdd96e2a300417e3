/* net_announce (net_filter.c) on this host, without CRIU: a stand-in
 * "restored container" (a network namespace of its own with eth0, one end
 * of a veth pair) captures on the pair's other end, as a bridge port would
 * see it, what net_announce sends from inside: one gratuitous ARP from the
 * container's MAC for its address, to the broadcast address. A namespace
 * without eth0 and a pid that is gone fail with a message, sending
 * nothing. Exit 77 (skip) where it cannot run. */
#include "net_filter.h"

#include <arpa/inet.h>
#include <errno.h>
#include <linux/if_ether.h>
#include <linux/if_packet.h>
#include <net/if.h>
#include <sched.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/time.h>
#include <sys/wait.h>
#include <unistd.h>

#define SKIP 77

static int failures;

static void check(int ok, const char *what)
{
	printf("%s: %s\n", ok ? "ok" : "FAIL", what);
	failures += !ok;
}

/* The stand-in: its own network namespace, eth0 when with_eth0; writes
 * 'r' once its capture on cap0 is bound (or 's' when it cannot run), then
 * the first ARP frame it sees within 5 s (nothing when none came). */
static void stand_in(int out, int with_eth0)
{
	if (unshare(CLONE_NEWNET) < 0) {
		(void)!write(out, "s", 1);
		_exit(0);
	}
	if (!with_eth0) {
		(void)!write(out, "r", 1);
		pause();
		_exit(0);
	}
	if (system("ip link add eth0 type veth peer name cap0 && ip link set eth0 up && "
		   "ip link set cap0 up") != 0) {
		(void)!write(out, "s", 1);
		_exit(0);
	}
	int fd = socket(AF_PACKET, SOCK_RAW, htons(ETH_P_ARP));
	struct sockaddr_ll at = {.sll_family = AF_PACKET, .sll_protocol = htons(ETH_P_ARP),
				 .sll_ifindex = (int)if_nametoindex("cap0")};
	struct timeval tv = {.tv_sec = 5};
	if (fd < 0 || bind(fd, (struct sockaddr *)&at, sizeof(at)) < 0 ||
	    setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof(tv)) < 0) {
		(void)!write(out, "s", 1);
		_exit(0);
	}
	(void)!write(out, "r", 1);
	unsigned char frame[128];
	ssize_t n = recv(fd, frame, sizeof(frame), 0);
	if (n > 0)
		(void)!write(out, frame, (size_t)n);
	_exit(0);
}

static pid_t start(int with_eth0, int *from)
{
	int p[2];
	if (pipe(p) < 0)
		return -1;
	pid_t pid = fork();
	if (pid == 0) {
		close(p[0]);
		stand_in(p[1], with_eth0);
	}
	close(p[1]);
	char c = 0;
	if (pid < 0 || read(p[0], &c, 1) != 1 || c != 'r') {
		if (pid > 0)
			waitpid(pid, NULL, 0);
		close(p[0]);
		return -1;
	}
	*from = p[0];
	return pid;
}

int main(void)
{
	if (geteuid() != 0) {
		printf("SKIP: needs root (network namespaces, veth pairs)\n");
		return SKIP;
	}
	const unsigned char mac[6] = {0x0a, 0x11, 0x22, 0x33, 0x44, 0x55};
	struct in_addr ip;
	inet_pton(AF_INET, "10.99.0.7", &ip);
	char err[512] = "";
	int from;
	pid_t pid = start(1, &from);
	if (pid < 0) {
		printf("SKIP: cannot make a network namespace with a veth pair here\n");
		return SKIP;
	}
	check(net_announce(pid, mac, ip, err, sizeof(err)) == 0, err[0] ? err : "net_announce");
	unsigned char f[128];
	ssize_t n = read(from, f, sizeof(f));
	waitpid(pid, NULL, 0);
	close(from);
	static const unsigned char bcast[6] = {0xff, 0xff, 0xff, 0xff, 0xff, 0xff};
	static const unsigned char req[] = {0, 1, 8, 0, 6, 4, 0, 1};
	check(n >= 42, "a frame arrived at the port");
	check(n >= 42 && !memcmp(f, bcast, 6) && !memcmp(f + 6, mac, 6), "broadcast, from its MAC");
	check(n >= 42 && f[12] == 0x08 && f[13] == 0x06 && !memcmp(f + 14, req, 8), "an ARP request");
	check(n >= 42 && !memcmp(f + 22, mac, 6) && !memcmp(f + 28, &ip.s_addr, 4) &&
		      !memcmp(f + 38, &ip.s_addr, 4),
	      "gratuitous: sender and target are its address, sender its MAC");

	pid = start(0, &from);
	check(pid > 0, "a namespace without eth0");
	if (pid > 0) {
		err[0] = 0;
		check(net_announce(pid, mac, ip, err, sizeof(err)) < 0 && strstr(err, "eth0"), err);
		kill(pid, SIGKILL);
		waitpid(pid, NULL, 0);
		close(from);
		/* Gone now: its /proc entry with it. */
		err[0] = 0;
		check(net_announce(pid, mac, ip, err, sizeof(err)) < 0 && strstr(err, "cannot open"),
		      err);
	}
	return failures ? 1 : 0;
}
