/* HTTPS for kvzd's TCP listener: the certificate and key kvzd serves, given
 * (--tls-cert/--tls-key) or made at first start (a self-signed ECDSA P-256
 * certificate kept in STATE/tls/ so that browsers see the same one after a
 * restart). */
#ifndef KVZD_TLS_H
#define KVZD_TLS_H

#include <stddef.h>

struct tls_pem {
	char *cert; /* PEM, NUL-terminated, owned */
	char *key;
};

/* Reads cert_path and key_path when given (both or neither), else
 * STATE/tls/cert.pem and key.pem, creating them (key mode 0600) when
 * missing. 0, or -1 with err set. */
int tls_load_or_create(const char *state_dir, const char *cert_path, const char *key_path,
		       struct tls_pem *out, char *err, size_t errlen);
void tls_pem_free(struct tls_pem *p);

#endif
