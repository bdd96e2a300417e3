/* rtnetlink requests, one socket per request: these run a handful of times
 * when a VM starts, so simplicity beats reuse. */
#include "netlink_link.h"

#include <errno.h>
#include <libmnl/libmnl.h>
#include <linux/if_link.h>
#include <linux/rtnetlink.h>
#include <net/if.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

/* Sends the request in buf and waits for its acknowledgement. */
static int transact(struct nlmsghdr *nlh)
{
	char buf[MNL_SOCKET_BUFFER_SIZE];
	struct mnl_socket *nl = mnl_socket_open(NETLINK_ROUTE);
	int r = 0;

	if (!nl)
		return -errno;
	if (mnl_socket_bind(nl, 0, MNL_SOCKET_AUTOPID) < 0) {
		r = -errno;
		goto out;
	}
	unsigned portid = mnl_socket_get_portid(nl);
	nlh->nlmsg_flags |= NLM_F_REQUEST | NLM_F_ACK;
	nlh->nlmsg_seq = (unsigned)time(NULL);
	if (mnl_socket_sendto(nl, nlh, nlh->nlmsg_len) < 0) {
		r = -errno;
		goto out;
	}
	ssize_t n = mnl_socket_recvfrom(nl, buf, sizeof(buf));
	if (n < 0) {
		r = -errno;
		goto out;
	}
	/* mnl_cb_run turns an NLMSG_ERROR with a non-zero code into -1/errno. */
	if (mnl_cb_run(buf, n, nlh->nlmsg_seq, portid, NULL, NULL) < 0)
		r = -errno;
out:
	mnl_socket_close(nl);
	return r;
}

static struct nlmsghdr *link_msg(char *buf, int type, unsigned flags, int ifindex)
{
	struct nlmsghdr *nlh = mnl_nlmsg_put_header(buf);
	nlh->nlmsg_type = type;
	nlh->nlmsg_flags = flags;
	struct ifinfomsg *ifi = mnl_nlmsg_put_extra_header(nlh, sizeof(*ifi));
	ifi->ifi_family = AF_UNSPEC;
	ifi->ifi_index = ifindex;
	return nlh;
}

static int ifindex_of(const char *name)
{
	unsigned idx = if_nametoindex(name);
	return idx ? (int)idx : -ENODEV;
}

int netlink_link_up(const char *name)
{
	char buf[MNL_SOCKET_BUFFER_SIZE];
	int idx = ifindex_of(name);

	if (idx < 0)
		return idx;
	struct nlmsghdr *nlh = link_msg(buf, RTM_NEWLINK, 0, idx);
	struct ifinfomsg *ifi = mnl_nlmsg_get_payload(nlh);
	ifi->ifi_flags = IFF_UP;
	ifi->ifi_change = IFF_UP;
	return transact(nlh);
}

int netlink_bridge_create(const char *name)
{
	char buf[MNL_SOCKET_BUFFER_SIZE];
	struct nlmsghdr *nlh = link_msg(buf, RTM_NEWLINK, NLM_F_CREATE | NLM_F_EXCL, 0);

	mnl_attr_put_strz(nlh, IFLA_IFNAME, name);
	struct nlattr *info = mnl_attr_nest_start(nlh, IFLA_LINKINFO);
	mnl_attr_put_strz(nlh, IFLA_INFO_KIND, "bridge");
	mnl_attr_nest_end(nlh, info);
	return transact(nlh);
}

int netlink_link_set_master(const char *name, const char *master)
{
	char buf[MNL_SOCKET_BUFFER_SIZE];
	int idx = ifindex_of(name), midx = ifindex_of(master);

	if (idx < 0 || midx < 0)
		return -ENODEV;
	struct nlmsghdr *nlh = link_msg(buf, RTM_NEWLINK, 0, idx);
	mnl_attr_put_u32(nlh, IFLA_MASTER, (uint32_t)midx);
	return transact(nlh);
}

int netlink_link_delete(const char *name)
{
	char buf[MNL_SOCKET_BUFFER_SIZE];
	int idx = ifindex_of(name);

	if (idx < 0)
		return idx;
	return transact(link_msg(buf, RTM_DELLINK, 0, idx));
}
