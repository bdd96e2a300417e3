/* The session table and the login throttle of the web UI (web_session.h).
 * Both are small fixed arrays behind one mutex: lookups are a few hundred
 * comparisons, far below the cost of the HTTP request around them. */
#include "web_session.h"

#include <netinet/in.h>
#include <pthread.h>
#include <stdlib.h>
#include <string.h>
#include <sys/random.h>
#include <time.h>

#define MAX_SESSIONS 256
#define SESSION_MAX_AGE_S (12 * 3600)
/* Throttle: FREE_TRIES failures are free, then each one doubles the wait
 * before the next try from that address, up to MAX_WAIT_S; a success or
 * FORGET_S of silence clears the address. */
#define MAX_CLIENTS 1024
#define FREE_TRIES 5
#define MAX_WAIT_S 60
#define FORGET_S 600

struct session {
	char id[WEB_ID_HEX + 1]; /* "" when free */
	char csrf[WEB_ID_HEX + 1];
	int64_t created, last; /* ms, CLOCK_MONOTONIC */
};

struct client {
	unsigned char addr[16]; /* IPv4 mapped into IPv6 */
	unsigned failures;
	int64_t last, not_before; /* ms, CLOCK_MONOTONIC */
	bool used;
};

struct web_sessions {
	pthread_mutex_t lock;
	unsigned idle_s;
	struct session sess[MAX_SESSIONS];
	struct client clients[MAX_CLIENTS];
};

/* Milliseconds: whole seconds would make a 1 s wait anything from 0 to 1 s. */
static int64_t now_ms(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

struct web_sessions *web_sessions_new(unsigned idle_s)
{
	struct web_sessions *s = calloc(1, sizeof(*s));
	if (!s)
		return NULL;
	pthread_mutex_init(&s->lock, NULL);
	s->idle_s = idle_s;
	return s;
}

void web_sessions_free(struct web_sessions *s)
{
	if (!s)
		return;
	explicit_bzero(s->sess, sizeof(s->sess));
	pthread_mutex_destroy(&s->lock);
	free(s);
}

bool web_secret_equal(const char *a, const char *b)
{
	size_t la = strlen(a), lb = strlen(b);
	unsigned diff = (unsigned)(la ^ lb);
	for (size_t i = 0; i < lb; i++)
		diff |= (unsigned char)b[i] ^ (unsigned char)(i < la ? a[i] : 0);
	return diff == 0;
}

static int random_hex(char *out)
{
	unsigned char raw[WEB_ID_HEX / 2];
	if (getrandom(raw, sizeof(raw), 0) != (ssize_t)sizeof(raw))
		return -1;
	for (size_t i = 0; i < sizeof(raw); i++) {
		out[2 * i] = "0123456789abcdef"[raw[i] >> 4];
		out[2 * i + 1] = "0123456789abcdef"[raw[i] & 15];
	}
	out[WEB_ID_HEX] = 0;
	explicit_bzero(raw, sizeof(raw));
	return 0;
}

static bool expired(const struct web_sessions *s, const struct session *e, int64_t now)
{
	return now - e->last >= (int64_t)s->idle_s * 1000 ||
	       now - e->created >= SESSION_MAX_AGE_S * 1000LL;
}

int web_session_create(struct web_sessions *s, char *id, char *csrf)
{
	if (random_hex(id) || random_hex(csrf))
		return -1;
	int64_t now = now_ms();
	pthread_mutex_lock(&s->lock);
	struct session *slot = &s->sess[0];
	for (size_t i = 0; i < MAX_SESSIONS; i++) {
		struct session *e = &s->sess[i];
		if (!e->id[0] || expired(s, e, now)) {
			slot = e;
			break;
		}
		if (e->last < slot->last)
			slot = e;
	}
	memcpy(slot->id, id, WEB_ID_HEX + 1);
	memcpy(slot->csrf, csrf, WEB_ID_HEX + 1);
	slot->created = slot->last = now;
	pthread_mutex_unlock(&s->lock);
	return 0;
}

/* Under the lock: the live session named id, or NULL. Every slot is
 * compared in full so that timing says nothing about which ids exist. */
static struct session *find(struct web_sessions *s, const char *id, int64_t now)
{
	struct session *found = NULL;
	if (strlen(id) != WEB_ID_HEX)
		return NULL;
	for (size_t i = 0; i < MAX_SESSIONS; i++) {
		struct session *e = &s->sess[i];
		if (e->id[0] && web_secret_equal(id, e->id))
			found = e;
	}
	if (found && expired(s, found, now)) {
		explicit_bzero(found, sizeof(*found));
		found = NULL;
	}
	return found;
}

bool web_session_check(struct web_sessions *s, const char *id, char *csrf)
{
	int64_t now = now_ms();
	pthread_mutex_lock(&s->lock);
	struct session *e = find(s, id, now);
	if (e) {
		e->last = now;
		if (csrf)
			memcpy(csrf, e->csrf, WEB_ID_HEX + 1);
	}
	pthread_mutex_unlock(&s->lock);
	return e != NULL;
}

void web_session_destroy(struct web_sessions *s, const char *id)
{
	pthread_mutex_lock(&s->lock);
	struct session *e = find(s, id, now_ms());
	if (e)
		explicit_bzero(e, sizeof(*e));
	pthread_mutex_unlock(&s->lock);
}

static void addr_key(const struct sockaddr *sa, unsigned char key[16])
{
	memset(key, 0, 16);
	if (sa && sa->sa_family == AF_INET6) {
		memcpy(key, &((const struct sockaddr_in6 *)sa)->sin6_addr, 16);
	} else if (sa && sa->sa_family == AF_INET) {
		key[10] = key[11] = 0xff;
		memcpy(key + 12, &((const struct sockaddr_in *)sa)->sin_addr, 4);
	}
}

/* Under the lock: addr's entry, made (in place of the stalest) when
 * create is set. */
static struct client *client_of(struct web_sessions *s, const struct sockaddr *addr,
				int64_t now, bool create)
{
	unsigned char key[16];
	addr_key(addr, key);
	struct client *stalest = &s->clients[0];
	for (size_t i = 0; i < MAX_CLIENTS; i++) {
		struct client *c = &s->clients[i];
		if (c->used && now - c->last >= FORGET_S * 1000LL && now >= c->not_before)
			c->used = false;
		if (c->used && !memcmp(c->addr, key, 16))
			return c;
		if (!c->used || (stalest->used && c->last < stalest->last))
			stalest = c;
	}
	if (!create)
		return NULL;
	*stalest = (struct client){.used = true, .last = now};
	memcpy(stalest->addr, key, 16);
	return stalest;
}

bool web_login_allowed(struct web_sessions *s, const struct sockaddr *addr, unsigned *retry_s)
{
	int64_t now = now_ms();
	pthread_mutex_lock(&s->lock);
	struct client *c = client_of(s, addr, now, false);
	bool ok = !c || now >= c->not_before;
	if (!ok)
		*retry_s = (unsigned)((c->not_before - now + 999) / 1000);
	pthread_mutex_unlock(&s->lock);
	return ok;
}

void web_login_result(struct web_sessions *s, const struct sockaddr *addr, bool ok)
{
	int64_t now = now_ms();
	pthread_mutex_lock(&s->lock);
	struct client *c = client_of(s, addr, now, !ok);
	if (c && ok) {
		c->used = false;
	} else if (c) {
		c->failures++;
		c->last = now;
		if (c->failures >= FREE_TRIES) {
			unsigned shift = c->failures - FREE_TRIES;
			int64_t wait = shift >= 6 ? MAX_WAIT_S : (int64_t)1 << shift;
			c->not_before = now + 1000 * (wait > MAX_WAIT_S ? MAX_WAIT_S : wait);
		}
	}
	pthread_mutex_unlock(&s->lock);
}
