/* Live media change through kvz-vmm's QMP (media_live.h). kvzd opens and
 * checks the ISO itself (install_media_open): kvz-vmm's seccomp filter
 * forbids it to open files, and it checks the descriptor once more. */
#include "media_live.h"

#include <limits.h>
#include <stdio.h>
#include <string.h>
#include <unistd.h>

#include "guest_ops.h"
#include "install_media.h"
#include "kvzd.h"
#include "qmp_client.h"

#define CDROM_ID "cdrom0"   /* kvz-vmm's name for its CD-ROM */

/* Whether the running kvz-vmm has a CD-ROM drive (query-block lists it). */
static int has_drive(struct qmp_client *c, const char *name, bool *yes, struct op_error *e)
{
	char err[300];
	json_t *ret = NULL;
	int rc = qmp_client_execute(c, "query-block", NULL, &ret, NULL, 0, err, sizeof(err));
	if (rc)
		return op_fail(e, rc > 0 ? 409 : 502, "%s: query-block: %s", name, err);
	*yes = false;
	size_t i;
	json_t *b;
	json_array_foreach(ret, i, b) {
		const char *dev = json_string_value(json_object_get(b, "device"));
		*yes |= dev && !strcmp(dev, CDROM_ID);
	}
	json_decref(ret);
	return 0;
}

static int change(struct kvzd *d, struct qmp_client *c, const char *name, const char *iso,
		  struct op_error *e)
{
	char real[PATH_MAX], err[300];
	int fd = install_media_open(d->images, iso, real, sizeof(real), e);
	if (fd < 0)
		return -1;
	int rc = qmp_client_getfd(c, "cdrom", fd, err, sizeof(err));
	close(fd);
	if (rc)
		return op_fail(e, rc > 0 ? 409 : 502, "%s: getfd: %s", name, err);
	json_t *args = json_pack("{s:s,s:s,s:s}", "id", CDROM_ID, "filename", "fd:cdrom",
				 "format", "raw");
	rc = qmp_client_execute(c, "blockdev-change-medium", args, NULL, NULL, 0, err, sizeof(err));
	json_decref(args);
	if (rc)
		return op_fail(e, rc > 0 ? 409 : 502, "%s: the CD was not changed: %s", name, err);
	return 0;
}

/* force: out even when the guest locked the tray (QEMU's eject force). */
static int eject(struct qmp_client *c, const char *name, bool force, struct op_error *e)
{
	char err[300];
	json_t *args = json_pack("{s:s, s:b}", "id", CDROM_ID, "force", force);
	int rc = qmp_client_execute(c, "eject", args, NULL, NULL, 0, err, sizeof(err));
	json_decref(args);
	if (rc)
		return op_fail(e, rc > 0 ? 409 : 502, "%s: the CD was not ejected: %s%s", name, err,
			       rc > 0 && !force ? " (--force ejects it anyway)" : "");
	return 0;
}

int media_live_apply(struct kvzd *d, const char *name, const char *qmp, json_t *req,
		     bool had_cdrom, json_t *cfg, char *detail, size_t detaillen,
		     struct op_error *e)
{
	json_t *iso = json_object_get(req, "cdrom");
	if (!iso || (!json_is_string(iso) && !had_cdrom))
		return 0;   /* no medium named, or nothing to eject */
	struct qmp_client *c = guest_qmp_open(name, qmp, e);
	if (!c)
		return -1;
	bool drive;
	int rc = has_drive(c, name, &drive, e);
	if (rc == 0 && drive)
		rc = json_is_string(iso) ? change(d, c, name, cfg_str(cfg, "cdrom"), e) : eject(c, name, json_is_true(json_object_get(req, "force")), e);
	qmp_client_close(c);
	if (rc)
		return -1;
	size_t l = strlen(detail);
	snprintf(detail + l, detaillen - l, "%s", drive ? "; applied to the running VM"
		 : "; at the next start (the running VM has no CD-ROM drive)");
	return 0;
}
