#include "netlink.h"

#include <errno.h>
#include <libmnl/libmnl.h>
#include <linux/if_link.h>
#include <linux/rtnetlink.h>
#include <linux/veth.h>
#include <net/if.h>
#include <stdbool.h>
#include <stdio.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

/* Big enough for any message sent or answered here. */
#define NL_BUF_SIZE 8192

/* Sends one request and waits for its ACK; the kernel's errno becomes the
 * message. */
static int nl_talk(struct nlmsghdr *nlh, const char *what, char *err, size_t len)
{
	struct mnl_socket *nl = mnl_socket_open(NETLINK_ROUTE);
	if (!nl) {
		snprintf(err, len, "%s: netlink socket: %s", what, strerror(errno));
		return -1;
	}
	int rc = -1;
	if (mnl_socket_bind(nl, 0, MNL_SOCKET_AUTOPID) < 0) {
		snprintf(err, len, "%s: netlink bind: %s", what, strerror(errno));
		goto out;
	}
	unsigned portid = mnl_socket_get_portid(nl);
	nlh->nlmsg_flags |= NLM_F_REQUEST | NLM_F_ACK;
	nlh->nlmsg_seq = (unsigned)time(NULL);
	if (mnl_socket_sendto(nl, nlh, nlh->nlmsg_len) < 0) {
		snprintf(err, len, "%s: netlink send: %s", what, strerror(errno));
		goto out;
	}
	char buf[NL_BUF_SIZE];
	ssize_t n = mnl_socket_recvfrom(nl, buf, sizeof(buf));
	if (n < 0 || mnl_cb_run(buf, (size_t)n, nlh->nlmsg_seq, portid, NULL, NULL) < 0) {
		snprintf(err, len, "%s: %s", what, strerror(errno));
		goto out;
	}
	rc = 0;
out:
	mnl_socket_close(nl);
	return rc;
}

static struct ifinfomsg *link_msg(char *buf, uint16_t type, uint16_t flags)
{
	struct nlmsghdr *nlh = mnl_nlmsg_put_header(buf);
	nlh->nlmsg_type = type;
	nlh->nlmsg_flags = flags;
	struct ifinfomsg *ifm = mnl_nlmsg_put_extra_header(nlh, sizeof(*ifm));
	ifm->ifi_family = AF_UNSPEC;
	return ifm;
}

static int index_of(const char *ifname, char *err, size_t len)
{
	unsigned idx = if_nametoindex(ifname);
	if (!idx)
		snprintf(err, len, "no network interface '%s'", ifname);
	return (int)idx;
}

int nl_bridge_ensure(const char *br, bool *created, char *err, size_t len)
{
	*created = false;
	if (if_nametoindex(br))
		return nl_link_up(br, err, len);
	if (strlen(br) >= IFNAMSIZ) {
		snprintf(err, len, "cannot create bridge '%s': name longer than %d characters",
			 br, IFNAMSIZ - 1);
		return -1;
	}
	char buf[NL_BUF_SIZE], what[64];
	link_msg(buf, RTM_NEWLINK, NLM_F_CREATE | NLM_F_EXCL);
	struct nlmsghdr *nlh = (struct nlmsghdr *)buf;
	mnl_attr_put_strz(nlh, IFLA_IFNAME, br);
	struct nlattr *info = mnl_attr_nest_start(nlh, IFLA_LINKINFO);
	mnl_attr_put_strz(nlh, IFLA_INFO_KIND, "bridge");
	mnl_attr_nest_end(nlh, info);
	snprintf(what, sizeof(what), "cannot create bridge '%s'", br);
	if (nl_talk(nlh, what, err, len) < 0) {
		/* Another supervisor may have created it a moment ago. */
		if (!if_nametoindex(br))
			return -1;
		return nl_link_up(br, err, len);
	}
	*created = true;
	return nl_link_up(br, err, len);
}

int nl_veth_create(const char *host, const char *peer, pid_t peer_pid, const unsigned char *peer_mac,
		   char *err, size_t len)
{
	char buf[NL_BUF_SIZE], what[64];
	link_msg(buf, RTM_NEWLINK, NLM_F_CREATE | NLM_F_EXCL);
	struct nlmsghdr *nlh = (struct nlmsghdr *)buf;
	mnl_attr_put_strz(nlh, IFLA_IFNAME, host);
	struct nlattr *info = mnl_attr_nest_start(nlh, IFLA_LINKINFO);
	mnl_attr_put_strz(nlh, IFLA_INFO_KIND, "veth");
	struct nlattr *data = mnl_attr_nest_start(nlh, IFLA_INFO_DATA);
	struct nlattr *p = mnl_attr_nest_start(nlh, VETH_INFO_PEER);
	struct ifinfomsg *pifm = mnl_nlmsg_put_extra_header(nlh, sizeof(*pifm));
	memset(pifm, 0, sizeof(*pifm));
	pifm->ifi_family = AF_UNSPEC;
	mnl_attr_put_strz(nlh, IFLA_IFNAME, peer);
	mnl_attr_put_u32(nlh, IFLA_NET_NS_PID, (uint32_t)peer_pid);
	if (peer_mac)
		mnl_attr_put(nlh, IFLA_ADDRESS, 6, peer_mac);
	mnl_attr_nest_end(nlh, p);
	mnl_attr_nest_end(nlh, data);
	mnl_attr_nest_end(nlh, info);
	snprintf(what, sizeof(what), "cannot create veth pair '%s'", host);
	return nl_talk(nlh, what, err, len);
}

int nl_link_set_master(const char *ifname, const char *master, char *err, size_t len)
{
	int idx = index_of(ifname, err, len), midx = index_of(master, err, len);
	if (!idx || !midx)
		return -1;
	char buf[NL_BUF_SIZE], what[96];
	struct ifinfomsg *ifm = link_msg(buf, RTM_NEWLINK, 0);
	ifm->ifi_index = idx;
	mnl_attr_put_u32((struct nlmsghdr *)buf, IFLA_MASTER, (uint32_t)midx);
	snprintf(what, sizeof(what), "cannot attach '%s' to bridge '%s'", ifname, master);
	return nl_talk((struct nlmsghdr *)buf, what, err, len);
}

static int link_set_up(const char *ifname, bool up, char *err, size_t len)
{
	int idx = index_of(ifname, err, len);
	if (!idx)
		return -1;
	char buf[NL_BUF_SIZE], what[64];
	struct ifinfomsg *ifm = link_msg(buf, RTM_NEWLINK, 0);
	ifm->ifi_index = idx;
	ifm->ifi_flags = up ? IFF_UP : 0;
	ifm->ifi_change = IFF_UP;
	snprintf(what, sizeof(what), "cannot bring '%s' %s", ifname, up ? "up" : "down");
	return nl_talk((struct nlmsghdr *)buf, what, err, len);
}

int nl_link_up(const char *ifname, char *err, size_t len)
{
	return link_set_up(ifname, true, err, len);
}

int nl_link_down(const char *ifname, char *err, size_t len)
{
	return link_set_up(ifname, false, err, len);
}

int nl_link_del(const char *ifname, char *err, size_t len)
{
	int idx = index_of(ifname, err, len);
	if (!idx)
		return -1;
	char buf[NL_BUF_SIZE], what[64];
	struct ifinfomsg *ifm = link_msg(buf, RTM_DELLINK, 0);
	ifm->ifi_index = idx;
	snprintf(what, sizeof(what), "cannot delete '%s'", ifname);
	return nl_talk((struct nlmsghdr *)buf, what, err, len);
}

int nl_addr_add(const char *ifname, struct in_addr addr, unsigned prefix, char *err, size_t len)
{
	int idx = index_of(ifname, err, len);
	if (!idx)
		return -1;
	char buf[NL_BUF_SIZE], what[64];
	struct nlmsghdr *nlh = mnl_nlmsg_put_header(buf);
	nlh->nlmsg_type = RTM_NEWADDR;
	nlh->nlmsg_flags = NLM_F_CREATE | NLM_F_REPLACE;
	struct ifaddrmsg *ifa = mnl_nlmsg_put_extra_header(nlh, sizeof(*ifa));
	ifa->ifa_family = AF_INET;
	ifa->ifa_prefixlen = (unsigned char)prefix;
	ifa->ifa_index = (unsigned)idx;
	mnl_attr_put(nlh, IFA_LOCAL, sizeof(addr), &addr);
	mnl_attr_put(nlh, IFA_ADDRESS, sizeof(addr), &addr);
	snprintf(what, sizeof(what), "cannot add address to '%s'", ifname);
	return nl_talk(nlh, what, err, len);
}

int nl_route_default(const char *ifname, struct in_addr gw, char *err, size_t len)
{
	int idx = index_of(ifname, err, len);
	if (!idx)
		return -1;
	char buf[NL_BUF_SIZE];
	struct nlmsghdr *nlh = mnl_nlmsg_put_header(buf);
	nlh->nlmsg_type = RTM_NEWROUTE;
	nlh->nlmsg_flags = NLM_F_CREATE | NLM_F_REPLACE;
	struct rtmsg *rtm = mnl_nlmsg_put_extra_header(nlh, sizeof(*rtm));
	rtm->rtm_family = AF_INET;
	rtm->rtm_dst_len = 0;
	rtm->rtm_table = RT_TABLE_MAIN;
	rtm->rtm_protocol = RTPROT_STATIC;
	rtm->rtm_scope = RT_SCOPE_UNIVERSE;
	rtm->rtm_type = RTN_UNICAST;
	mnl_attr_put(nlh, RTA_GATEWAY, sizeof(gw), &gw);
	mnl_attr_put_u32(nlh, RTA_OIF, (uint32_t)idx);
	return nl_talk(nlh, "cannot add default route", err, len);
}
