/* The TLS certificate and key of the TCP listener (tls.h). GnuTLS makes the
 * self-signed pair; libmicrohttpd (built with GnuTLS) serves it. */
#include "tls.h"

#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/random.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include <gnutls/gnutls.h>
#include <gnutls/x509.h>

#include "log.h"

#define CERT_DAYS 3650
#define MAX_PEM (64 * 1024)

static char *read_pem(const char *path, char *err, size_t errlen)
{
	int fd = open(path, O_RDONLY | O_CLOEXEC | O_NOCTTY);
	if (fd < 0) {
		snprintf(err, errlen, "%s: %s", path, strerror(errno));
		return NULL;
	}
	char *buf = malloc(MAX_PEM + 1);
	size_t len = 0;
	ssize_t n = 0;
	while (buf && len < MAX_PEM && (n = read(fd, buf + len, MAX_PEM - len)) > 0)
		len += (size_t)n;
	close(fd);
	if (!buf || n < 0 || len == 0 || len == MAX_PEM || !memmem(buf, len, "-----BEGIN", 10)) {
		snprintf(err, errlen, "%s: not a PEM file of at most %d bytes", path, MAX_PEM - 1);
		free(buf);
		return NULL;
	}
	buf[len] = 0;
	return buf;
}

static int write_file(const char *path, const void *data, size_t len, mode_t mode,
		      char *err, size_t errlen)
{
	char tmp[600];
	snprintf(tmp, sizeof(tmp), "%s.tmp", path);
	int fd = open(tmp, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC | O_NOFOLLOW, mode);
	if (fd < 0 || write(fd, data, len) != (ssize_t)len || fsync(fd) < 0 ||
	    close(fd) < 0 || rename(tmp, path) < 0) {
		snprintf(err, errlen, "cannot write %s: %s", path, strerror(errno));
		if (fd >= 0)
			close(fd);
		unlink(tmp);
		return -1;
	}
	return 0;
}

static char *datum_str(gnutls_datum_t *d)
{
	char *s = malloc(d->size + 1);
	if (s) {
		memcpy(s, d->data, d->size);
		s[d->size] = 0;
	}
	gnutls_free(d->data);
	return s;
}

static int sign_cert(gnutls_x509_crt_t crt, gnutls_x509_privkey_t key)
{
	unsigned char serial[16];
	char host[256] = "kvzd";
	if (getrandom(serial, sizeof(serial), 0) != sizeof(serial))
		return GNUTLS_E_RANDOM_FAILED;
	serial[0] &= 0x7f; /* a positive serial number */
	gethostname(host, sizeof(host) - 1);
	time_t now = time(NULL);
	int rc;
	if ((rc = gnutls_x509_crt_set_version(crt, 3)) ||
	    (rc = gnutls_x509_crt_set_serial(crt, serial, sizeof(serial))) ||
	    (rc = gnutls_x509_crt_set_activation_time(crt, now - 3600)) ||
	    (rc = gnutls_x509_crt_set_expiration_time(crt, now + CERT_DAYS * 86400LL)) ||
	    (rc = gnutls_x509_crt_set_dn_by_oid(crt, GNUTLS_OID_X520_COMMON_NAME, 0, host,
						 (unsigned)strlen(host))) ||
	    (rc = gnutls_x509_crt_set_subject_alt_name(crt, GNUTLS_SAN_DNSNAME, host,
							(unsigned)strlen(host), GNUTLS_FSAN_SET)) ||
	    (rc = gnutls_x509_crt_set_subject_alt_name(crt, GNUTLS_SAN_DNSNAME, "localhost", 9,
							GNUTLS_FSAN_APPEND)) ||
	    (rc = gnutls_x509_crt_set_key(crt, key)) ||
	    (rc = gnutls_x509_crt_set_basic_constraints(crt, 0, -1)) ||
	    (rc = gnutls_x509_crt_set_key_usage(crt, GNUTLS_KEY_DIGITAL_SIGNATURE)) ||
	    (rc = gnutls_x509_crt_set_key_purpose_oid(crt, GNUTLS_KP_TLS_WWW_SERVER, 0)))
		return rc;
	return gnutls_x509_crt_sign2(crt, crt, key, GNUTLS_DIG_SHA256, 0);
}

/* A new key and a self-signed certificate for it, as PEM. */
static int make_self_signed(struct tls_pem *out, char *err, size_t errlen)
{
	gnutls_x509_privkey_t key = NULL;
	gnutls_x509_crt_t crt = NULL;
	gnutls_datum_t kd = {0}, cd = {0};
	int rc;
	if ((rc = gnutls_x509_privkey_init(&key)) ||
	    (rc = gnutls_x509_privkey_generate(key, GNUTLS_PK_ECDSA,
					       GNUTLS_CURVE_TO_BITS(GNUTLS_ECC_CURVE_SECP256R1), 0)) ||
	    (rc = gnutls_x509_crt_init(&crt)) || (rc = sign_cert(crt, key)) ||
	    (rc = gnutls_x509_privkey_export2(key, GNUTLS_X509_FMT_PEM, &kd)) ||
	    (rc = gnutls_x509_crt_export2(crt, GNUTLS_X509_FMT_PEM, &cd))) {
		snprintf(err, errlen, "cannot make a self-signed certificate: %s",
			 gnutls_strerror(rc));
	} else {
		out->key = datum_str(&kd);
		out->cert = datum_str(&cd);
		kd.data = cd.data = NULL;
		if (!out->key || !out->cert) {
			snprintf(err, errlen, "out of memory");
			rc = -1;
		}
	}
	gnutls_free(kd.data);
	gnutls_free(cd.data);
	if (crt)
		gnutls_x509_crt_deinit(crt);
	if (key)
		gnutls_x509_privkey_deinit(key);
	return rc ? -1 : 0;
}

static int create_default(const char *dir, const char *cert_path, const char *key_path,
			  struct tls_pem *out, char *err, size_t errlen)
{
	if (mkdir(dir, 0700) < 0 && errno != EEXIST) {
		snprintf(err, errlen, "cannot create %s: %s", dir, strerror(errno));
		return -1;
	}
	if (make_self_signed(out, err, errlen) ||
	    write_file(key_path, out->key, strlen(out->key), 0600, err, errlen) ||
	    write_file(cert_path, out->cert, strlen(out->cert), 0644, err, errlen)) {
		unlink(key_path);
		tls_pem_free(out);
		return -1;
	}
	kvz_info("made a self-signed TLS certificate: %s", cert_path);
	return 0;
}

int tls_load_or_create(const char *state_dir, const char *cert_path, const char *key_path,
		       struct tls_pem *out, char *err, size_t errlen)
{
	*out = (struct tls_pem){0};
	if (!cert_path != !key_path) {
		snprintf(err, errlen, "--tls-cert and --tls-key go together");
		return -1;
	}
	char dir[300], cp[400], kp[400];
	if (!cert_path) {
		snprintf(dir, sizeof(dir), "%s/tls", state_dir);
		snprintf(cp, sizeof(cp), "%s/cert.pem", dir);
		snprintf(kp, sizeof(kp), "%s/key.pem", dir);
		if (access(cp, F_OK) < 0 && access(kp, F_OK) < 0)
			return create_default(dir, cp, kp, out, err, errlen);
		cert_path = cp;
		key_path = kp;
	}
	out->cert = read_pem(cert_path, err, errlen);
	out->key = out->cert ? read_pem(key_path, err, errlen) : NULL;
	if (!out->key) {
		tls_pem_free(out);
		return -1;
	}
	return 0;
}

void tls_pem_free(struct tls_pem *p)
{
	if (p->key)
		explicit_bzero(p->key, strlen(p->key));
	free(p->key);
	free(p->cert);
	*p = (struct tls_pem){0};
}
