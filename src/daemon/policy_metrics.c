#include "policy_metrics.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>


const char *policy_psi_missing(void)
{
	/* Only a pure v2 hierarchy has the memory controller with PSI at
	 * its root; a hybrid host's /sys/fs/cgroup/unified has no memory. */
	FILE *f = fopen("/sys/fs/cgroup/cgroup.controllers", "r");
	char line[512] = "";
	if (f) {
		if (!fgets(line, sizeof(line), f))
			line[0] = 0;
		fclose(f);
	}
	if (!f || !strstr(line, "memory"))
		return "mem_pressure needs cgroup v2 (PSI memory.pressure); this host has v1 "
		       "memory cgroups";
	return NULL;
}

int policy_psi_some_avg10(const char *text, double *out)
{
	const char *p = strstr(text, "some avg10=");
	if (!p || (p != text && p[-1] != '\n'))
		return -1;
	char *end;
	double v = strtod(p + 11, &end);
	if (end == p + 11 || v < 0 || v > 100)
		return -1;
	*out = v;
	return 0;
}

int policy_ct_cgroup_dir(const char *proc_cgroup, const char *name, char *buf, size_t len)
{
	for (const char *l = proc_cgroup; l && *l; l = strchr(l, '\n') ? strchr(l, '\n') + 1 : NULL) {
		if (strncmp(l, "0::", 3))
			continue;
		size_t n = strcspn(l + 3, "\n");
		static const char leaf[] = "/_supervisors";
		size_t ll = sizeof(leaf) - 1;
		if (n < ll || strncmp(l + 3 + n - ll, leaf, ll))
			return -1;
		int w = snprintf(buf, len, "/sys/fs/cgroup%.*s/%s", (int)(n - ll), l + 3, name);
		return w > 0 && (size_t)w < len ? 0 : -1;
	}
	return -1;
}

/* The container's cgroup from its supervisor's /proc/PID/cgroup. */
static int ct_cgroup(pid_t sup, const char *name, char *buf, size_t len)
{
	char path[64], text[2048];
	snprintf(path, sizeof(path), "/proc/%d/cgroup", (int)sup);
	FILE *f = fopen(path, "r");
	if (!f)
		return -1;
	size_t n = fread(text, 1, sizeof(text) - 1, f);
	fclose(f);
	text[n] = 0;
	return policy_ct_cgroup_dir(text, name, buf, len);
}

int policy_mem_pressure(const char *guest, pid_t sup, double *out)
{
	char dir[700], file[760], text[512];
	int rc = -1;
	if (sup > 0 && !ct_cgroup(sup, guest, dir, sizeof(dir))) {
		snprintf(file, sizeof(file), "%s/memory.pressure", dir);
		FILE *f = fopen(file, "r");
		size_t n = f ? fread(text, 1, sizeof(text) - 1, f) : 0;
		if (f)
			fclose(f);
		text[n] = 0;
		rc = n ? policy_psi_some_avg10(text, out) : -1;
	}
	return rc;
}

int policy_net_rate(json_t *samples, bool rx, double *out)
{
	size_t n = json_array_size(samples);
	if (n < 2)
		return -1;
	json_t *a = json_array_get(samples, n - 2), *b = json_array_get(samples, n - 1);
	const char *k = rx ? "net_rx" : "net_tx";
	json_int_t ta = json_integer_value(json_object_get(a, "ts_ms"));
	json_int_t tb = json_integer_value(json_object_get(b, "ts_ms"));
	json_int_t va = json_integer_value(json_object_get(a, k));
	json_int_t vb = json_integer_value(json_object_get(b, k));
	if (tb <= ta || vb < va)
		return -1;
	*out = (double)(vb - va) * 1000.0 / (double)(tb - ta);
	return 0;
}
