/* Shared by lib/tls/tls.c (contexts), lib/tls/tls-x509.c and lib/tls/tls-psk-cb.c
 * (credentials).  Not for other modules: use tls.h. */
#ifndef CRYPTVOL_TLS_INTERNAL_H
#define CRYPTVOL_TLS_INTERNAL_H

#include <openssl/ssl.h>

#include "tls-psk.h"

/* What an SSL_CTX carries besides OpenSSL's own state (its ex_data at
 * cv_tls_ex_ctx(), freed with the SSL_CTX). */
struct cv_tls_creds {
    struct cv_psk_table *psk;
    const struct cv_psk *client_psk;    /* the one a client offers */
};

/* Server session id context.  OpenSSL insists on one when it verifies
 * peers and a session (an external PSK is one) is used; a server's PSK
 * sessions carry the same so that they match (a client's must not). */
#define CV_TLS_SID_CTX ((const unsigned char *)"cryptvol")
#define CV_TLS_SID_CTX_LEN 8

int cv_tls_ex_ctx(void);
/* An SSL's ex_data: the PSK identity (a string in the table) offered or
 * accepted on it, for cv_tls_peer_name. */
int cv_tls_ex_ssl(void);

/* Sets "tls: what: <OpenSSL's reasons>" and returns code. */
int cv_tls_openssl_error(int code, const char *what);

/* Client certificates: not asked for, asked for and verified when sent,
 * or required. */
enum cv_tls_verify { CV_TLS_VERIFY_NONE, CV_TLS_VERIFY_REQUEST,
                     CV_TLS_VERIFY_REQUIRE };
int cv_tls_x509_server(SSL_CTX *ctx, const char *dir, enum cv_tls_verify v);
int cv_tls_x509_client(SSL_CTX *ctx, const char *dir);
int cv_tls_psk_server(SSL_CTX *ctx, const char *path);
int cv_tls_psk_client(SSL_CTX *ctx, const char *path, const char *identity);

#endif
