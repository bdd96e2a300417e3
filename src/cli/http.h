/* kvz's client of the kvzd API: HTTP/1.1 over the UNIX socket, by libcurl. */
#ifndef KVZ_CLI_HTTP_H
#define KVZ_CLI_HTTP_H

#include <stdbool.h>

#include <jansson.h>

/* Set once by main() from --socket / KVZ_SOCKET / the default. */
void http_set_socket(const char *path);
const char *http_socket(void);

/* Sends method path with body (borrowed, may be NULL). On a 2xx answer
 * returns 0 and, when out is not NULL, the parsed JSON (or a JSON string
 * holding a text body). Otherwise prints one line on stderr (kvzd's error
 * message, or why kvzd could not be reached) and returns -1. */
int http_call(const char *method, const char *path, json_t *body, json_t **out);
/* The same for a text answer (/metrics). *out is malloc'ed. */
int http_text(const char *path, char **out);

#endif
