/* What kvz-ct reads back from a checkpoint directory and from CRIU: the
 * limits of kvz-ct.json (restore parses them with the command line's
 * parser) and the error line taken from a CRIU log. The input is used as
 * both: a JSON document and a log text. */
#include "criu.h"
#include "ct_limits.h"

#include <stdint.h>
#include <stdlib.h>
#include <string.h>

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	char *text = malloc(size + 1);
	if (!text)
		return 0;
	memcpy(text, data, size);
	text[size] = 0;
	char line[256], err[256];
	criu_log_error(text, line, sizeof(line));
	free(text);
	json_t *doc = json_loadb((const char *)data, size, 0, NULL);
	struct ct_limits l = {0};
	if (doc && ct_limits_from_json(&l, json_object_get(doc, "limits"), err, sizeof(err))) {
		/* What was parsed must survive the trip through the file. */
		json_t *again = ct_limits_to_json(&l);
		struct ct_limits back = {0};
		if (!ct_limits_from_json(&back, again, err, sizeof(err)) ||
		    memcmp(&l, &back, sizeof(l)) != 0)
			abort();
		json_decref(again);
	}
	json_decref(doc);
	return 0;
}
