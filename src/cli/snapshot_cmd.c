/* kvz snapshot create|list|restore|delete (items_cmd.c). */
#include <stdio.h>

#include "cli.h"

static void print_snapshots(json_t *list)
{
	printf("%-24s %-19s %-8s %s\n", "SNAPSHOT", "CREATED (UTC)", "STATE", "SIZE");
	size_t i;
	json_t *s;
	json_array_foreach(list, i, s) {
		char t[32], sz[16];
		printf("%-24s %-19s %-8s %s\n", json_string_value(json_object_get(s, "name")),
		       fmt_time(json_integer_value(json_object_get(s, "created_ms")), t, sizeof(t)),
		       json_is_true(json_object_get(s, "running")) ? "running" : "stopped",
		       fmt_size((uint64_t)json_integer_value(json_object_get(s, "size")), sz,
				sizeof(sz)));
	}
}

int cmd_snapshot(int argc, char **argv)
{
	static const struct item_kind snapshots = {
		.noun = "snapshot", .meta = "SNAP", .collection = "snapshots", .max_len = 63,
		.print = print_snapshots,
	};
	return item_cmd(&snapshots, argc, argv);
}
