/* Guest configuration: create requests parsed and checked into the JSON
 * object kept in the store (docs/api.md lists the fields), and the value
 * checks shared with resizing. */
#ifndef KVZD_GUEST_CONFIG_H
#define KVZD_GUEST_CONFIG_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include <jansson.h>

#include "guest_ops.h"

/* Fills e and returns -1. */
int op_fail(struct op_error *e, int status, const char *fmt, ...)
	__attribute__((format(printf, 3, 4)));

/* A size given as a JSON string ("512M") or a number of bytes. */
bool cfg_size(json_t *v, uint64_t *out);
/* "SOFT:HARD", a size, or a number of bytes (soft = hard). */
bool cfg_size_pair(json_t *v, uint64_t *soft, uint64_t *hard);
/* A CPU count: number or string, above 0, at most 1024. */
bool cfg_cpus(json_t *v, double *out);
/* The string at key, or NULL. */
const char *cfg_str(json_t *obj, const char *key);
/* 400 for a key not in the NULL-terminated allowed list. */
int cfg_check_keys(json_t *req, const char *const *allowed, struct op_error *e);
/* 409 when bytes exceeds the host's memory. */
int cfg_check_memory_fits(uint64_t bytes, struct op_error *e);
/* req's "tags" (a list of up to 16 names, duplicates dropped) into
 * cfg["tags"]: what policy rules select guests by (docs/policy.md). No
 * "tags" in req leaves cfg as it is. */
int cfg_tags(json_t *req, json_t *cfg, struct op_error *e);

struct image_dirs;
/* A kernel or initrd path from a client, resolved beneath the image
 * directories into out; 400 with the same message for every refusal. */
/* The refusal of a path outside the image directories: -1 with a 400 in e
 * that says the same whether it exists elsewhere or not. */
int cfg_image_refused(const struct image_dirs *dirs, const char *key, const char *path,
		      struct op_error *e);
int cfg_image_path(const struct image_dirs *dirs, const char *key, const char *path,
		   char *out, size_t outlen, struct op_error *e);

/* The configuration of a new VM or container from a POST /v1/guests body;
 * 400/409 with a message on bad or impossible values. */
int guest_config_vm(const struct image_dirs *dirs, json_t *req, json_t *cfg,
		    struct op_error *e);
int guest_config_ct(json_t *req, json_t *cfg, struct op_error *e);

#endif
