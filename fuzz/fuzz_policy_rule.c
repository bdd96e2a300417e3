/* libFuzzer target: policy rules as API clients send them
 * (src/daemon/policy_rules.c) and cron schedules (policy_cron.c). The input
 * is tried as a cron spec and as a JSON rule; a rule that parses must come
 * back unchanged through its canonical JSON, and a schedule that parses must
 * give a next time after the one asked about (or none). */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include <jansson.h>

#include "policy_rules.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static void try_cron(const uint8_t *data, size_t size)
{
	char spec[300];
	size_t n = size < sizeof(spec) - 1 ? size : sizeof(spec) - 1;
	memcpy(spec, data, n);
	spec[n] = 0;
	struct cron c;
	char err[200];
	if (cron_parse(spec, &c, err, sizeof(err)))
		return;
	time_t t = 1764547200;   /* 2025-12-01 */
	time_t next = cron_next(&c, t);
	if (next != -1 && (next <= t || !cron_matches(&c, next)))
		abort();
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	try_cron(data, size);
	json_t *j = json_loadb((const char *)data, size, JSON_DECODE_ANY, NULL);
	if (!j)
		return 0;
	struct policy_rule r, r2;
	char err[300];
	if (!policy_rule_parse(j, &r, err, sizeof(err))) {
		json_t *canon = policy_rule_json(&r);
		if (!canon || policy_rule_parse(canon, &r2, err, sizeof(err)) ||
		    memcmp(&r, &r2, sizeof(r)))
			abort();
		char msg[300];
		(void)policy_rules_conflict(&r, &r2, msg, sizeof(msg));
		json_decref(canon);
	} else if (!err[0] || !strchr(err, ':')) {
		abort();   /* every error names its field */
	}
	json_decref(j);
	return 0;
}
