/* TLS contexts: one SSL_CTX per cv_tls, rebuilt from the same files on
 * reload and swapped under a mutex.  Connections hold their own reference
 * to the SSL_CTX they were made from (SSL_new takes one), so a reload never
 * pulls credentials from under a handshake in progress. */
#include "tls.h"
#include "tls-internal.h"
#include "core/error.h"

#include <errno.h>
#include <limits.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <openssl/err.h>
#include <openssl/x509v3.h>

struct cv_tls {
    int server;
    char *x509_dir, *psk_file, *psk_identity, *peer_host;
    int verify_peer, request_peer;
    pthread_mutex_t lock;       /* guards ctx */
    SSL_CTX *ctx;
};

static void creds_free(void *parent, void *ptr, CRYPTO_EX_DATA *ad, int idx,
                       long argl, void *argp)
{
    struct cv_tls_creds *c = ptr;

    (void)parent; (void)ad; (void)idx; (void)argl; (void)argp;
    if (c) {
        cv_psk_table_free(c->psk);
        free(c);
    }
}

/* OpenSSL's ex_data indices are process-wide by design; they are set once
 * here and only read afterwards.  The SSL_CTX index carries a free function
 * so the PSK table lives exactly as long as the SSL_CTX that uses it (and
 * so as long as the last connection made from it). */
static pthread_once_t ex_once = PTHREAD_ONCE_INIT;
static int ex_ctx_index = -1, ex_ssl_index = -1;

static void ex_init(void)
{
    ex_ctx_index = SSL_CTX_get_ex_new_index(0, NULL, NULL, NULL, creds_free);
    ex_ssl_index = SSL_get_ex_new_index(0, NULL, NULL, NULL, NULL);
}

int cv_tls_ex_ctx(void)
{
    pthread_once(&ex_once, ex_init);
    return ex_ctx_index;
}

int cv_tls_ex_ssl(void)
{
    pthread_once(&ex_once, ex_init);
    return ex_ssl_index;
}

const char *cv_tls_error_string(char *buf, size_t len)
{
    unsigned long e;
    size_t used = 0;
    const char *data;
    int flags;

    if (len == 0)
        return buf;
    buf[0] = '\0';
    while ((e = ERR_get_error_all(NULL, NULL, NULL, &data, &flags)) != 0) {
        const char *reason = ERR_reason_error_string(e);
        int n;

        if (!reason)
            reason = "unknown error";
        if (strstr(buf, reason))        /* the same reason at two levels */
            continue;
        if (!(flags & ERR_TXT_STRING) || !data[0])
            data = NULL;
        n = snprintf(buf + used, len - used, "%s%s%s%s%s", used ? ": " : "",
                     reason, data ? " (" : "", data ? data : "",
                     data ? ")" : "");
        if (n < 0 || (size_t)n >= len - used)
            break;
        used += (size_t)n;
    }
    if (buf[0] == '\0')
        snprintf(buf, len, "unknown TLS error");
    ERR_clear_error();
    return buf;
}

int cv_tls_openssl_error(int code, const char *path)
{
    char buf[256];

    return cv_error(code, "tls: %s: %s", path,
                    cv_tls_error_string(buf, sizeof buf));
}

/* A fresh SSL_CTX with everything cfg names, or a negative errno. */
static int ctx_new(const struct cv_tls *t, SSL_CTX **out)
{
    SSL_CTX *ctx;
    int r = 0;

    *out = NULL;
    ERR_clear_error();
    ctx = SSL_CTX_new(t->server ? TLS_server_method() : TLS_client_method());
    if (!ctx)
        return cv_tls_openssl_error(-ENOMEM, "new context");
    /* TLS 1.3 only: no renegotiation, no RSA key transport, no CBC. */
    if (!SSL_CTX_set_min_proto_version(ctx, TLS1_3_VERSION)) {
        r = cv_tls_openssl_error(-EINVAL, "TLS 1.3");
        goto out;
    }
    if (t->server && !SSL_CTX_set_session_id_context(ctx, CV_TLS_SID_CTX,
                                                     CV_TLS_SID_CTX_LEN)) {
        r = cv_tls_openssl_error(-EINVAL, "session id context");
        goto out;
    }
    if (t->server)
        /* NBD connections live long; resumption would buy little and let a
         * session outlive a reload that removed its credentials. */
        SSL_CTX_set_num_tickets(ctx, 0);
    else
        /* Always, also for a PSK-only client: a server that ignores our
         * PSK and shows some certificate must fail verification (with no
         * ca-cert.pem, any certificate does), not be trusted unchecked. */
        SSL_CTX_set_verify(ctx, SSL_VERIFY_PEER, NULL);
    if (t->x509_dir)
        r = t->server ? cv_tls_x509_server(ctx, t->x509_dir,
                                           t->verify_peer ? CV_TLS_VERIFY_REQUIRE :
                                           t->request_peer ? CV_TLS_VERIFY_REQUEST :
                                           CV_TLS_VERIFY_NONE)
                      : cv_tls_x509_client(ctx, t->x509_dir);
    if (r == 0 && t->psk_file)
        r = t->server ? cv_tls_psk_server(ctx, t->psk_file)
                      : cv_tls_psk_client(ctx, t->psk_file, t->psk_identity);
out:
    if (r < 0)
        SSL_CTX_free(ctx);
    else
        *out = ctx;
    return r;
}

static char *dup_or_null(const char *s, int *fail)
{
    char *d;

    if (!s)
        return NULL;
    d = strdup(s);
    if (!d)
        *fail = 1;
    return d;
}

static int tls_new(const struct cv_tls_config *cfg, int server,
                   struct cv_tls **out)
{
    struct cv_tls *t;
    int fail = 0, r;

    *out = NULL;
    if (!cfg->x509_dir && !cfg->psk_file)
        return cv_error(-EINVAL, "tls: neither a certificate directory nor "
                        "a PSK file is configured");
    if (!server && (cfg->verify_peer || cfg->request_peer))
        return cv_error(-EINVAL, "tls: verify_peer is for servers (a client "
                        "always verifies the server against ca-cert.pem)");
    t = calloc(1, sizeof *t);
    if (!t)
        return cv_error(-ENOMEM, "tls: out of memory");
    t->server = server;
    t->verify_peer = cfg->verify_peer;
    t->request_peer = cfg->request_peer;
    t->x509_dir = dup_or_null(cfg->x509_dir, &fail);
    t->psk_file = dup_or_null(cfg->psk_file, &fail);
    t->psk_identity = dup_or_null(cfg->psk_identity, &fail);
    t->peer_host = dup_or_null(cfg->peer_host, &fail);
    pthread_mutex_init(&t->lock, NULL);
    r = fail ? cv_error(-ENOMEM, "tls: out of memory") : ctx_new(t, &t->ctx);
    if (r < 0) {
        cv_tls_free(t);
        return r;
    }
    *out = t;
    return 0;
}

int cv_tls_server_new(const struct cv_tls_config *cfg, struct cv_tls **out)
{
    return tls_new(cfg, 1, out);
}

int cv_tls_client_new(const struct cv_tls_config *cfg, struct cv_tls **out)
{
    return tls_new(cfg, 0, out);
}

int cv_tls_reload(struct cv_tls *t)
{
    SSL_CTX *ctx, *old;
    int r;

    r = ctx_new(t, &ctx);
    if (r < 0)
        return cv_error_prefix(r, "tls: reload failed, keeping the "
                               "credentials loaded before");
    pthread_mutex_lock(&t->lock);
    old = t->ctx;
    t->ctx = ctx;
    pthread_mutex_unlock(&t->lock);
    SSL_CTX_free(old);      /* connections made from it keep their ref */
    return 0;
}

/* Client: which server we expect, for SNI and the certificate check. */
static int set_peer_host(SSL *ssl, const char *host)
{
    ASN1_OCTET_STRING *ip = a2i_IPADDRESS(host);
    X509_VERIFY_PARAM *vp = SSL_get0_param(ssl);
    int ok;

    if (ip) {
        ASN1_OCTET_STRING_free(ip);
        return X509_VERIFY_PARAM_set1_ip_asc(vp, host);
    }
    ok = SSL_set_tlsext_host_name(ssl, host) && SSL_set1_host(ssl, host);
    return ok;
}

SSL *cv_tls_ssl_new(struct cv_tls *t, int fd)
{
    SSL *ssl;

    ERR_clear_error();
    pthread_mutex_lock(&t->lock);
    ssl = SSL_new(t->ctx);
    pthread_mutex_unlock(&t->lock);
    if (!ssl) {
        cv_tls_openssl_error(-ENOMEM, "new connection");
        return NULL;
    }
    if (!SSL_set_fd(ssl, fd) ||
        (!t->server && t->peer_host && !set_peer_host(ssl, t->peer_host))) {
        cv_tls_openssl_error(-EINVAL, "new connection");
        SSL_free(ssl);
        return NULL;
    }
    if (t->server)
        SSL_set_accept_state(ssl);
    else
        SSL_set_connect_state(ssl);
    return ssl;
}

void cv_tls_peer_name(SSL *ssl, char *buf, size_t len)
{
    const char *id = SSL_get_ex_data(ssl, cv_tls_ex_ssl());
    X509 *cert = SSL_get0_peer_certificate(ssl);
    BIO *b;
    int n;

    if (len == 0)
        return;
    /* The callbacks record the identity they offered or accepted; it was
     * used only if the handshake ended up as a PSK one. */
    if (id && SSL_session_reused(ssl)) {
        snprintf(buf, len, "psk:%s", id);
        return;
    }
    snprintf(buf, len, "%s", cert ? "certificate" : "anonymous");
    if (!cert || !(b = BIO_new(BIO_s_mem())))
        return;
    if (X509_NAME_print_ex(b, X509_get_subject_name(cert), 0,
                           XN_FLAG_RFC2253) >= 0) {
        n = BIO_read(b, buf, (int)(len - 1 < INT_MAX ? len - 1 : INT_MAX));
        buf[n > 0 ? n : 0] = '\0';
    }
    BIO_free(b);
}

void cv_tls_free(struct cv_tls *t)
{
    if (!t)
        return;
    SSL_CTX_free(t->ctx);
    pthread_mutex_destroy(&t->lock);
    free(t->x509_dir);
    free(t->psk_file);
    free(t->psk_identity);
    free(t->peer_host);
    free(t);
}

static enum cv_tls_failure failure_of(unsigned long e)
{
    if (ERR_GET_LIB(e) != ERR_LIB_SSL)
        return CV_TLS_FAIL_OTHER;
    switch (ERR_GET_REASON(e)) {
    case SSL_R_PEER_DID_NOT_RETURN_A_CERTIFICATE:
        return CV_TLS_FAIL_NO_CERT;
    case SSL_R_CERTIFICATE_VERIFY_FAILED:
        return CV_TLS_FAIL_VERIFY;
    case SSL_R_UNSUPPORTED_PROTOCOL: case SSL_R_NO_PROTOCOLS_AVAILABLE:
    case SSL_R_WRONG_VERSION_NUMBER: case SSL_R_NO_SHARED_CIPHER:
    case SSL_R_HTTP_REQUEST: case SSL_R_UNKNOWN_PROTOCOL:
        return CV_TLS_FAIL_PROTOCOL;
    case SSL_R_DECRYPTION_FAILED_OR_BAD_RECORD_MAC:
    case SSL_R_DECRYPTION_FAILED:
        return CV_TLS_FAIL_DECRYPT;
    default:
        return CV_TLS_FAIL_OTHER;
    }
}

enum cv_tls_failure cv_tls_failure_of(void)
{
    /* The reason is at the start of the queue; what callers stacked on
     * it (a "record layer failure" after a bad MAC) comes later. */
    enum cv_tls_failure f = failure_of(ERR_peek_error());

    return f != CV_TLS_FAIL_OTHER ? f : failure_of(ERR_peek_last_error());
}
