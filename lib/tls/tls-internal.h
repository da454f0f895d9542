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

/* Certificates (tls-init.c): what a leaf is for.  A node of a cluster
 * (tls-issue.c) is both server and client of its peers, with one key. */
enum cv_tls_cert_kind { CV_TLS_CERT_CA, CV_TLS_CERT_SERVER,
                        CV_TLS_CERT_CLIENT, CV_TLS_CERT_NODE };
/* A certificate for key with subject CN=cn, signed by issuer_key (issuer
 * NULL: self-signed by key), with the extensions of its kind; hosts
 * (NULL-terminated DNS names or IP addresses) go into the subjectAltName
 * of a server or node certificate. */
int cv_tls_make_cert(const char *cn, EVP_PKEY *key, X509 *issuer,
                     EVP_PKEY *issuer_key, enum cv_tls_cert_kind kind,
                     const char *const *hosts, X509 **out);
/* Writes cert or, when key is set, key (mode 0600) as PEM to dir/name, a
 * new file (O_EXCL: never over another; removed again if writing fails). */
int cv_tls_write_pem(const char *dir, const char *name, X509 *cert,
                     EVP_PKEY *key);
/* A host must be an IP address or a DNS name (letters, digits, '-', '.',
 * '_', and '*' for a wildcard label). */
int cv_tls_check_host(const char *h);
/* DIR/NAME into buf (PATH_MAX): -ENAMETOOLONG, saying so, if too long. */
int cv_tls_path_in(char *buf, const char *dir, const char *name);
/* OpenSSL's password callback that never prompts for an encrypted key
 * (a daemon has no terminal): the read fails instead. */
int cv_tls_no_password(char *buf, int size, int rwflag, void *u);

#endif
