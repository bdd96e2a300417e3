/* libFuzzer target: the usage history a peer kvzd's migration commit
 * carries (src/daemon/migration_stats.c): rows and each row's disks from
 * another host. The input is the commit's JSON body; whatever is taken
 * in must be what the store and /metrics can hold (the store stands in
 * here and checks it). */
#include <assert.h>
#include <math.h>
#include <stdint.h>
#include <stdio.h>

#include "migration_stats.h"
#include "store.h"

#define NOW_MS 1800000000000LL

int store_samples_import(struct store *s, const char *guest, int resolution,
			 const struct sample *smp, size_t n)
{
	(void)s;
	(void)guest;
	assert(resolution == 0 || resolution == 60);
	assert(n <= 1440 + 3600);
	for (size_t i = 0; i < n; i++) {
		assert(smp[i].ts_ms >= NOW_MS - 24 * 3600 * 1000LL && smp[i].ts_ms <= NOW_MS + 60000);
		assert(isfinite(smp[i].cpu_pct) && smp[i].cpu_pct >= 0);
		assert(smp[i].ndisks <= SAMPLE_DISKS);
		for (unsigned k = 0; k < smp[i].ndisks; k++)
			assert(sample_device_ok(smp[i].disks[k].device));
	}
	return 0;
}

/* Export's side, not fuzzed here. */
json_t *store_sample_list(struct store *s, const char *guest, int resolution, int64_t since_ms)
{
	(void)s;
	(void)guest;
	(void)resolution;
	(void)since_ms;
	return json_array();
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	json_t *body = json_loadb((const char *)data, size, 0, NULL);
	char err[200];
	if (body)
		mig_stats_import(NULL, "fuzz", body, NOW_MS, err, sizeof(err));
	json_decref(body);
	return 0;
}
