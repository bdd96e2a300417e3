#include "nodes.h"

#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "guest_config.h"
#include "parse.h"
#include "peer_client.h"
#include "store.h"

/* Adding and removing nodes one at a time, so that a name's record and its
 * token file always go together. Guards no memory. */
static pthread_mutex_t nodes_lock = PTHREAD_MUTEX_INITIALIZER;

static void token_path(const struct kvzd *d, const char *name, char *buf, size_t len)
{
	snprintf(buf, len, "%s/nodes/%s.token", d->state_dir, name);
}

/* Written beside, fsync'ed and renamed: never a half-written token. */
static int write_token(const struct kvzd *d, const char *name, const char *token,
		       struct op_error *e)
{
	char dir[300], path[400], tmp[420];
	snprintf(dir, sizeof(dir), "%s/nodes", d->state_dir);
	if ((mkdir(dir, 0700) < 0 && errno != EEXIST) || chmod(dir, 0700) < 0)
		return op_fail(e, 500, "cannot create %s: %s", dir, strerror(errno));
	token_path(d, name, path, sizeof(path));
	snprintf(tmp, sizeof(tmp), "%s.new", path);
	unlink(tmp);
	int fd = open(tmp, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC | O_NOFOLLOW, 0600);
	if (fd < 0)
		return op_fail(e, 500, "cannot create %s: %s", tmp, strerror(errno));
	size_t n = strlen(token);
	bool ok = write(fd, token, n) == (ssize_t)n && write(fd, "\n", 1) == 1 && fsync(fd) == 0;
	ok = close(fd) == 0 && ok;
	if (!ok || rename(tmp, path) < 0) {
		unlink(tmp);
		return op_fail(e, 500, "cannot write %s: %s", path, strerror(errno));
	}
	return 0;
}

static int read_token(const struct kvzd *d, const char *name, char *buf, size_t len,
		      struct op_error *e)
{
	char path[400];
	token_path(d, name, path, sizeof(path));
	FILE *f = fopen(path, "re");
	if (!f)
		return op_fail(e, 500, "node %s: cannot read its token %s: %s", name, path,
			       strerror(errno));
	bool ok = fgets(buf, (int)len, f) != NULL;
	fclose(f);
	buf[strcspn(buf, "\n")] = 0;
	if (!ok || !buf[0])
		return op_fail(e, 500, "node %s: its token file %s is empty", name, path);
	return 0;
}

int node_lookup(struct kvzd *d, const char *name, struct node *out, struct op_error *e)
{
	if (!kvz_valid_name(name))
		return op_fail(e, 400, "bad node name \"%s\"", name);
	json_t *rec = store_node_get(d->store, name);
	if (!rec)
		return op_fail(e, 404, "no node named %s", name);
	snprintf(out->name, sizeof(out->name), "%s", name);
	snprintf(out->url, sizeof(out->url), "%s", cfg_str(rec, "url"));
	json_decref(rec);
	return read_token(d, name, out->token, sizeof(out->token), e);
}

/* The peer's GET /v1/host, or NULL with why in err. */
static json_t *peer_host(const struct node *n, char *err, size_t errlen)
{
	json_t *host = NULL;
	long status = peer_call(n->url, n->token, "GET", "/v1/host", NULL, &host, err, errlen);
	if (status == 200 && json_is_object(host))
		return host;
	if (status == 401)
		snprintf(err, errlen, "%s refused the token", n->url);
	else if (status > 0)
		snprintf(err, errlen, "%s answered HTTP %ld to GET /v1/host", n->url, status);
	json_decref(host);
	return NULL;
}

/* The stored record plus what the peer says of itself now. */
static json_t *with_facts(struct kvzd *d, json_t *rec)
{
	json_t *v = json_deep_copy(rec);
	struct node n;
	struct op_error e;
	char err[600] = "";
	json_t *host = NULL;
	if (node_lookup(d, cfg_str(rec, "name"), &n, &e) == 0)
		host = peer_host(&n, err, sizeof(err));
	else
		snprintf(err, sizeof(err), "%.500s", e.msg);
	json_object_set_new(v, "reachable", json_boolean(host != NULL));
	if (!host) {
		json_object_set_new(v, "error", json_string(err));
		return v;
	}
	json_t *facts = peer_host_facts(host);
	json_object_update(v, facts);
	json_decref(facts);
	json_decref(host);
	return v;
}

int node_check(struct kvzd *d, const char *name, char *err, size_t len)
{
	struct node n;
	struct op_error e;
	if (node_lookup(d, name, &n, &e)) {
		snprintf(err, len, "%.500s", e.msg);
		return -1;
	}
	json_t *host = peer_host(&n, err, len);
	json_decref(host);
	return host ? 0 : -1;
}

static int check_add(json_t *req, struct op_error *e)
{
	static const char *const keys[] = {"name", "url", "token", NULL};
	if (!json_is_object(req))
		return op_fail(e, 400, "the body must be {\"name\", \"url\", \"token\"}");
	if (cfg_check_keys(req, keys, e))
		return -1;
	const char *name = cfg_str(req, "name"), *url = cfg_str(req, "url");
	const char *token = cfg_str(req, "token");
	if (!name || !kvz_valid_name(name))
		return op_fail(e, 400, "bad or missing node name (letters, digits, '_', '.', '-'; up to 63)");
	if (!url || !peer_url_ok(url))
		return op_fail(e, 400, "bad or missing url (want http://HOST:PORT, the peer's kvzd --listen)");
	if (!token || strlen(token) < 16 || strlen(token) >= sizeof(((struct node *)0)->token))
		return op_fail(e, 400, "bad or missing token (16 to 511 characters)");
	for (const char *c = token; *c; c++)
		if (*c <= ' ' || *c == 0x7f)
			return op_fail(e, 400, "the token may hold no spaces or control characters");
	return 0;
}

int node_add(struct kvzd *d, json_t *req, struct op_error *e)
{
	if (check_add(req, e))
		return -1;
	struct node n;
	snprintf(n.name, sizeof(n.name), "%s", cfg_str(req, "name"));
	snprintf(n.url, sizeof(n.url), "%s", cfg_str(req, "url"));
	snprintf(n.token, sizeof(n.token), "%s", cfg_str(req, "token"));
	char err[300];
	json_t *host = peer_host(&n, err, sizeof(err));
	if (!host)
		return op_fail(e, 502, "node %s: %s", n.name, err);
	json_decref(host);
	pthread_mutex_lock(&nodes_lock);
	int rc = store_node_insert(d->store, n.name, n.url);
	if (rc)
		op_fail(e, rc > 0 ? 409 : 500, rc > 0 ? "node %s already exists" : "cannot record node %s",
			n.name);
	else if (write_token(d, n.name, n.token, e))
		store_node_delete(d->store, n.name), rc = -1;
	pthread_mutex_unlock(&nodes_lock);
	if (rc == 0)
		store_event_add(d->store, NODES_EVENTS, "node-added", n.name);
	return rc ? -1 : 0;
}

int node_remove(struct kvzd *d, const char *name, struct op_error *e)
{
	if (!kvz_valid_name(name))
		return op_fail(e, 400, "bad node name \"%s\"", name);
	pthread_mutex_lock(&nodes_lock);
	json_t *rec = store_node_get(d->store, name);
	int rc = 0;
	if (!rec) {
		rc = op_fail(e, 404, "no node named %s", name);
	} else {
		char path[400];
		token_path(d, name, path, sizeof(path));
		if (unlink(path) < 0 && errno != ENOENT)
			rc = op_fail(e, 500, "cannot remove %s: %s", path, strerror(errno));
		else
			store_node_delete(d->store, name);
	}
	pthread_mutex_unlock(&nodes_lock);
	json_decref(rec);
	if (rc == 0)
		store_event_add(d->store, NODES_EVENTS, "node-removed", name);
	return rc;
}

json_t *node_show(struct kvzd *d, const char *name, struct op_error *e)
{
	if (!kvz_valid_name(name)) {
		op_fail(e, 400, "bad node name \"%s\"", name);
		return NULL;
	}
	json_t *rec = store_node_get(d->store, name);
	if (!rec) {
		op_fail(e, 404, "no node named %s", name);
		return NULL;
	}
	json_t *v = with_facts(d, rec);
	json_decref(rec);
	return v;
}

json_t *node_list(struct kvzd *d)
{
	json_t *list = store_node_list(d->store);
	json_t *out = json_array();
	size_t i;
	json_t *rec;
	json_array_foreach(list, i, rec)
		json_array_append_new(out, with_facts(d, rec));
	json_decref(list);
	return out;
}
