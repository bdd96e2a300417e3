/* Cluster mode's kvzd options (cluster_options.c). */
#ifndef KVZD_CLUSTER_OPTIONS_H
#define KVZD_CLUSTER_OPTIONS_H

#include <stdlib.h>

#include "cluster.h"
#include "peer_client.h"

enum {
	CLOPT_NODE_NAME = 1000, CLOPT_NODE_URL, CLOPT_CACERT, CLOPT_CERT, CLOPT_KEY,
	CLOPT_USER, CLOPT_PASSWORD_FILE, CLOPT_TTL, CLOPT_MAX_RESTARTS, CLOPT_MAX_RELOCATIONS,
};

#define CLUSTER_LONGOPTS \
	{"node-name", required_argument, NULL, CLOPT_NODE_NAME}, \
	{"node-url", required_argument, NULL, CLOPT_NODE_URL}, \
	{"etcd-cacert", required_argument, NULL, CLOPT_CACERT}, \
	{"etcd-cert", required_argument, NULL, CLOPT_CERT}, \
	{"etcd-key", required_argument, NULL, CLOPT_KEY}, \
	{"etcd-user", required_argument, NULL, CLOPT_USER}, \
	{"etcd-password-file", required_argument, NULL, CLOPT_PASSWORD_FILE}, \
	{"cluster-ttl", required_argument, NULL, CLOPT_TTL}, \
	{"ha-max-restarts", required_argument, NULL, CLOPT_MAX_RESTARTS}, \
	{"ha-max-relocations", required_argument, NULL, CLOPT_MAX_RELOCATIONS}

#define CLUSTER_USAGE \
	"  --node-name NAME       this node's name in a cluster (default: the host name)\n" \
	"  --node-url URL         its API for peers, http://HOST:PORT (default: from --listen)\n" \
	"  --etcd-cacert/--etcd-cert/--etcd-key FILE  TLS to etcd (CA, client certificate)\n" \
	"  --etcd-user USER --etcd-password-file FILE  etcd authentication\n" \
	"  --cluster-ttl S        lease TTL; a silent node is down after it (6)\n" \
	"  --ha-max-restarts N --ha-max-relocations N  HA limits per guest (3, 3)\n"

void cluster_options_default(struct cluster_opts *o);
/* 0 handled, 1 not a cluster option, -1 bad (said on stderr). */
int cluster_parse_option(int c, const char *arg, struct cluster_opts *o);
/* After parsing: the node URL from --listen. */
int cluster_options_finish(struct cluster_opts *o, const char *listen);

#endif
