/* kvz-ct-archive: the libarchive side of kvz-ct (archiver.h), one operation
 * per run:
 *   kvz-ct-archive pack DIR OUT [META_JSON]
 *   kvz-ct-archive unpack IN DIR
 *   kvz-ct-archive meta IN          (the metadata entry on stdout)
 * Errors: one line on stderr, exit 1. */
#include "ct_archive.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

int main(int argc, char **argv)
{
	char err[1024] = "";
	int rc = -1;
	if (argc >= 4 && argc <= 5 && !strcmp(argv[1], "pack")) {
		rc = archive_pack_dir(argv[2], argv[3], argc == 5 ? argv[4] : NULL, err, sizeof(err));
	} else if (argc == 4 && !strcmp(argv[1], "unpack")) {
		rc = archive_unpack(argv[2], argv[3], err, sizeof(err));
	} else if (argc == 3 && !strcmp(argv[1], "meta")) {
		char *meta = archive_read_meta(argv[2], err, sizeof(err));
		rc = meta && fputs(meta, stdout) >= 0 && fflush(stdout) == 0 ? 0 : -1;
		free(meta);
	} else {
		snprintf(err, sizeof(err), "usage: kvz-ct-archive pack DIR OUT [META] | unpack IN DIR | meta IN");
	}
	if (rc < 0)
		fprintf(stderr, "%s\n", err[0] ? err : "failed");
	return rc < 0 ? 1 : 0;
}
