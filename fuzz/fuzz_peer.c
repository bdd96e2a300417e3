/* libFuzzer target: what kvzd takes from another host (nodes.h). The
 * input's first line is a node URL for peer_url_ok(); the rest is a peer's
 * GET /v1/host answer for peer_host_facts(), whose result must hold only
 * checked fields: strings, counts in range, a finite non-negative
 * cpus_idle not above cpus. */
#include <math.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include <jansson.h>

#include "peer_client.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static void check_facts(json_t *f)
{
	const char *key;
	json_t *v;
	json_object_foreach(f, key, v) {
		if (!strcmp(key, "version") || !strcmp(key, "cpu_model")) {
			if (!json_is_string(v) || json_string_length(v) > 256)
				abort();
		} else if (!strcmp(key, "cpus_idle")) {
			double idle = json_real_value(v);
			json_int_t cpus = json_integer_value(json_object_get(f, "cpus"));
			if (!json_is_real(v) || !isfinite(idle) || idle < 0 || idle > (double)cpus)
				abort();
		} else if (!json_is_integer(v) || json_integer_value(v) < 0) {
			abort();
		}
	}
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	const uint8_t *nl = memchr(data, '\n', size);
	size_t ulen = nl ? (size_t)(nl - data) : size;
	char *url = malloc(ulen + 1);
	if (!url)
		return 0;
	memcpy(url, data, ulen);
	url[ulen] = 0;
	(void)peer_url_ok(url);
	free(url);
	if (!nl)
		return 0;
	json_t *host = json_loadb((const char *)nl + 1, size - ulen - 1, 0, NULL);
	if (json_is_object(host)) {
		json_t *f = peer_host_facts(host);
		check_facts(f);
		json_decref(f);
	}
	json_decref(host);
	return 0;
}
