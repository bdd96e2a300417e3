/* CRIU 3.17 with --network-lock nftables dumps a network namespace's
 * ruleset while its own lock table is in it ("table inet CRIU-PID", policy
 * drop for everything but its own marked packets), restores that table
 * with the rest, and at the end of the restore unlocks a table named after
 * the restoring criu, not that one: the restored container can send and
 * receive nothing, its TCP connections included. This removes such tables
 * from the restored container's network namespace. */
#include "criu.h"

#include <errno.h>
#include <fcntl.h>
#include <nftables/libnftables.h>
#include <sched.h>
#include <stdio.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

/* In the container's namespace (a child of ours entered it): deletes
 * every inet table whose name starts with "CRIU-". Returns how many. */
static int drop_tables(void)
{
	struct nft_ctx *nft = nft_ctx_new(NFT_CTX_DEFAULT);
	if (!nft || nft_ctx_buffer_output(nft) < 0 || nft_ctx_buffer_error(nft) < 0 ||
	    nft_run_cmd_from_buffer(nft, "list tables inet") != 0)
		return -1;
	char list[4096], cmd[128];
	snprintf(list, sizeof(list), "%s", nft_ctx_get_output_buffer(nft));
	int n = 0;
	for (char *line = strtok(list, "\n"); line; line = strtok(NULL, "\n")) {
		char name[64];
		if (sscanf(line, "table inet %63s", name) != 1 || strncmp(name, "CRIU-", 5) != 0)
			continue;
		snprintf(cmd, sizeof(cmd), "delete table inet %s", name);
		if (nft_run_cmd_from_buffer(nft, cmd) != 0)
			return -1;
		n++;
	}
	nft_ctx_free(nft);
	return n;
}

int criu_unlock_network(pid_t init, char *err, size_t len)
{
	char path[64];
	snprintf(path, sizeof(path), "/proc/%d/ns/net", (int)init);
	int ns = open(path, O_RDONLY | O_CLOEXEC);
	if (ns < 0) {
		snprintf(err, len, "cannot open %s: %s", path, strerror(errno));
		return -1;
	}
	pid_t pid = fork();
	if (pid == 0)
		_exit(setns(ns, CLONE_NEWNET) < 0 ? 2 : drop_tables() < 0 ? 1 : 0);
	close(ns);
	int status = 0;
	while (pid > 0 && waitpid(pid, &status, 0) < 0 && errno == EINTR)
		;
	if (pid < 0 || !WIFEXITED(status) || WEXITSTATUS(status) != 0) {
		snprintf(err, len, "cannot remove CRIU's network lock from the restored container");
		return -1;
	}
	return 0;
}
