/* TLS 1.3 external PSKs through OpenSSL's session callbacks.  GnuTLS (the
 * TLS library of nbdkit, qemu and libnbd) computes an external PSK's binder
 * with SHA-256, so the PSK is presented to OpenSSL as a session whose
 * cipher suite is TLS_AES_128_GCM_SHA256; OpenSSL accepts it for any
 * negotiated suite with the same hash. */
#include "tls-internal.h"
#include "core/error.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>

/* TLS_AES_128_GCM_SHA256, RFC 8446 B.4. */
static const unsigned char aes128gcmsha256[] = { 0x13, 0x01 };

/* Server: SHA-256 suites first, and our order rather than the client's,
 * because GnuTLS prefers TLS_AES_256_GCM_SHA384, with which a SHA-256 PSK
 * cannot be used. */
#define PSK_SUITES \
    "TLS_AES_128_GCM_SHA256:TLS_CHACHA20_POLY1305_SHA256:TLS_AES_256_GCM_SHA384"

static SSL_SESSION *psk_session(SSL *ssl, const struct cv_psk *p)
{
    const SSL_CIPHER *cipher = SSL_CIPHER_find(ssl, aes128gcmsha256);
    SSL_SESSION *s = SSL_SESSION_new();

    /* OpenSSL copies the key into the session; that copy is in its heap,
     * not locked memory, and is wiped when the session is freed. */
    if (!s || !cipher || !SSL_SESSION_set1_master_key(s, p->key, p->keylen) ||
        !SSL_SESSION_set_cipher(s, cipher) ||
        !SSL_SESSION_set_protocol_version(s, TLS1_3_VERSION) ||
        (SSL_is_server(ssl) && !SSL_SESSION_set1_id_context(s, CV_TLS_SID_CTX,
                                                           CV_TLS_SID_CTX_LEN))) {
        SSL_SESSION_free(s);
        return NULL;
    }
    return s;
}

static struct cv_tls_creds *creds_of(SSL *ssl)
{
    return SSL_CTX_get_ex_data(SSL_get_SSL_CTX(ssl), cv_tls_ex_ctx());
}

/* An unknown identity is not an error here: the handshake goes on without
 * a PSK and fails unless a certificate can stand in. */
static int find_session(SSL *ssl, const unsigned char *id, size_t idlen,
                        SSL_SESSION **sess)
{
    struct cv_tls_creds *c = creds_of(ssl);
    const struct cv_psk *p = c ? cv_psk_find(c->psk, id, idlen) : NULL;

    *sess = NULL;
    if (!p)
        return 1;
    *sess = psk_session(ssl, p);
    if (!*sess)
        return 0;
    SSL_set_ex_data(ssl, cv_tls_ex_ssl(), (void *)p->identity);
    return 1;
}

static int use_session(SSL *ssl, const EVP_MD *md, const unsigned char **id,
                       size_t *idlen, SSL_SESSION **sess)
{
    struct cv_tls_creds *c = creds_of(ssl);
    const struct cv_psk *p = c ? c->client_psk : NULL;

    *sess = NULL;
    *id = NULL;
    *idlen = 0;
    /* After a HelloRetryRequest the suite is fixed; a SHA-384 one cannot
     * carry this PSK, so offer none (and rely on a certificate). */
    if (!p || (md && EVP_MD_get_type(md) != NID_sha256))
        return 1;
    *sess = psk_session(ssl, p);
    if (!*sess)
        return 0;
    *id = (const unsigned char *)p->identity;
    *idlen = strlen(p->identity);
    SSL_set_ex_data(ssl, cv_tls_ex_ssl(), (void *)p->identity);
    return 1;
}

/* Hands table to ctx (freed with it), also on failure. */
static int attach(SSL_CTX *ctx, struct cv_psk_table *table,
                  const char *identity, const char *path)
{
    struct cv_tls_creds *c = calloc(1, sizeof *c);

    if (!c) {
        cv_psk_table_free(table);
        return cv_error(-ENOMEM, "tls: out of memory");
    }
    c->psk = table;
    c->client_psk = table->psk;
    if (identity)
        c->client_psk = cv_psk_find(table, identity, strlen(identity));
    if (!SSL_CTX_set_ex_data(ctx, cv_tls_ex_ctx(), c)) {
        cv_psk_table_free(table);
        free(c);
        return cv_tls_openssl_error(-ENOMEM, path);
    }
    if (!c->client_psk)
        return cv_error(-ENOENT, "tls: PSK file %s: no identity \"%s\"", path,
                        identity ? identity : "(first)");
    return 0;
}

int cv_tls_psk_server(SSL_CTX *ctx, const char *path)
{
    struct cv_psk_table *table;
    int r;

    r = cv_psk_table_read(path, &table);
    if (r < 0)
        return cv_error_prefix(r, "tls");
    r = attach(ctx, table, NULL, path);
    if (r < 0)
        return r;
    if (SSL_CTX_set_ciphersuites(ctx, PSK_SUITES) != 1)
        return cv_tls_openssl_error(-EINVAL, "cipher suites");
    SSL_CTX_set_options(ctx, SSL_OP_CIPHER_SERVER_PREFERENCE);
    SSL_CTX_set_psk_find_session_callback(ctx, find_session);
    return 0;
}

int cv_tls_psk_client(SSL_CTX *ctx, const char *path, const char *identity)
{
    struct cv_psk_table *table;
    int r;

    r = cv_psk_table_read(path, &table);
    if (r < 0)
        return cv_error_prefix(r, "tls");
    r = attach(ctx, table, identity, path);
    if (r < 0)
        return r;
    SSL_CTX_set_psk_use_session_callback(ctx, use_session);
    return 0;
}
