/* Bearer tokens in files (kvzd --token-file, kvz node add --token-file):
 * the file must be private, since the token is the TCP API's only secret. */
#ifndef KVZ_TOKEN_FILE_H
#define KVZ_TOKEN_FILE_H

/* The first line of path (malloc'ed), or NULL after one kvz_error() line:
 * path must be a regular file of root or of this user, closed to group and
 * others, holding a token of at least 16 characters. */
char *kvz_read_token_file(const char *path);

#endif
