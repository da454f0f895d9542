/* X.509 credentials from a directory in the layout nbdkit and qemu use:
 * ca-cert.pem, server-cert.pem, server-key.pem, client-cert.pem,
 * client-key.pem. */
#include "tls-internal.h"
#include "core/error.h"
#include "core/secret-file.h"

#include <errno.h>
#include <limits.h>
#include <stdio.h>
#include <string.h>
#include <sys/stat.h>

#include <openssl/err.h>
#include <openssl/pem.h>

/* Checks a certificate file before OpenSSL reads it: OpenSSL's own message
 * for a missing file ("system lib") says less than errno does. */
static int check_file(const char *path)
{
    struct stat st;

    if (stat(path, &st) != 0)
        return cv_error(-errno, "tls: %s: %s", path, strerror(errno));
    if (!S_ISREG(st.st_mode))
        return cv_error(-EINVAL, "tls: %s: not a regular file", path);
    return 0;
}

int cv_tls_path_in(char *buf, const char *dir, const char *name)
{
    if (snprintf(buf, PATH_MAX, "%s/%s", dir, name) >= PATH_MAX)
        return cv_error(-ENAMETOOLONG, "tls: %s/%s: path too long", dir,
                        name);
    return 0;
}

/* Never prompt on a terminal for an encrypted key: a daemon has none. */
int cv_tls_no_password(char *buf, int size, int rwflag, void *u)
{
    (void)buf; (void)size; (void)rwflag; (void)u;
    return -1;
}

/* Reads a private key through cv_secret_read_file, which refuses a file
 * that group or others can read and keeps the PEM text in locked memory. */
static int load_key(SSL_CTX *ctx, const char *path)
{
    struct cv_secret s = { 0 };
    EVP_PKEY *key = NULL;
    BIO *bio = NULL;
    int r;

    r = cv_secret_read_file(path, "key file", &s);
    if (r < 0)
        return cv_error_prefix(r, "tls");
    bio = BIO_new_mem_buf(s.data, (int)s.len);
    if (bio)
        key = PEM_read_bio_PrivateKey(bio, NULL, cv_tls_no_password,
                                      NULL);
    if (!key) {
        r = cv_tls_openssl_error(-EINVAL, path);
        goto out;
    }
    if (SSL_CTX_use_PrivateKey(ctx, key) != 1)
        r = cv_tls_openssl_error(-EINVAL, path);
out:
    EVP_PKEY_free(key);
    BIO_free(bio);
    cv_secret_free(&s);
    return r;
}

/* A certificate (with any chain after it) and its key. */
static int load_pair(SSL_CTX *ctx, const char *dir, const char *cert,
                     const char *key)
{
    char path[PATH_MAX];
    int r;

    r = cv_tls_path_in(path, dir, cert);
    if (r == 0)
        r = check_file(path);
    if (r < 0)
        return r;
    if (SSL_CTX_use_certificate_chain_file(ctx, path) != 1)
        return cv_tls_openssl_error(-EINVAL, path);
    r = cv_tls_path_in(path, dir, key);
    if (r == 0)
        r = load_key(ctx, path);
    return r;
}

static int load_ca(SSL_CTX *ctx, const char *dir, int client_ca_list)
{
    STACK_OF(X509_NAME) *names;
    char path[PATH_MAX];
    int r;

    r = cv_tls_path_in(path, dir, "ca-cert.pem");
    if (r == 0)
        r = check_file(path);
    if (r < 0)
        return r;
    if (SSL_CTX_load_verify_file(ctx, path) != 1)
        return cv_tls_openssl_error(-EINVAL, path);
    if (!client_ca_list)
        return 0;
    /* Named in the CertificateRequest so that a client holding several
     * certificates (GnuTLS does this) picks one from our CA. */
    names = SSL_load_client_CA_file(path);
    if (!names)
        return cv_tls_openssl_error(-EINVAL, path);
    SSL_CTX_set_client_CA_list(ctx, names);
    return 0;
}

int cv_tls_x509_server(SSL_CTX *ctx, const char *dir, enum cv_tls_verify v)
{
    int r;

    r = load_pair(ctx, dir, "server-cert.pem", "server-key.pem");
    if (r == 0 && v != CV_TLS_VERIFY_NONE)
        r = load_ca(ctx, dir, 1);
    /* A certificate that is sent is verified either way: a bad one fails
     * the handshake, it is never taken as "no certificate". */
    if (r == 0 && v != CV_TLS_VERIFY_NONE)
        SSL_CTX_set_verify(ctx, SSL_VERIFY_PEER |
                           (v == CV_TLS_VERIFY_REQUIRE ?
                            SSL_VERIFY_FAIL_IF_NO_PEER_CERT : 0), NULL);
    return r;
}

int cv_tls_x509_client(SSL_CTX *ctx, const char *dir)
{
    char path[PATH_MAX];
    struct stat st;
    int r;

    r = load_ca(ctx, dir, 0);
    if (r < 0)
        return r;
    r = cv_tls_path_in(path, dir, "client-cert.pem");
    if (r < 0)
        return r;
    /* A client certificate is optional: only servers with verify_peer
     * ask for one. */
    if (stat(path, &st) != 0 && errno == ENOENT)
        return 0;
    return load_pair(ctx, dir, "client-cert.pem", "client-key.pem");
}
