/* kvz backup create|list|restore|delete: a container's private area as a
 * tar.zst kept by kvzd (items_cmd.c). */
#include <stdio.h>

#include "cli.h"

static void print_backups(json_t *list)
{
	printf("%-40s %-19s %s\n", "BACKUP", "CREATED (UTC)", "SIZE");
	size_t i;
	json_t *b;
	json_array_foreach(list, i, b) {
		char t[32], sz[16];
		printf("%-40s %-19s %s\n", json_string_value(json_object_get(b, "name")),
		       fmt_time(json_integer_value(json_object_get(b, "created_ms")), t, sizeof(t)),
		       fmt_size((uint64_t)json_integer_value(json_object_get(b, "size")), sz,
				sizeof(sz)));
	}
}

int cmd_backup(int argc, char **argv)
{
	static const struct item_kind backups = {
		.noun = "backup", .meta = "B", .collection = "backups", .max_len = 40,
		.print = print_backups,
	};
	return item_cmd(&backups, argc, argv);
}
