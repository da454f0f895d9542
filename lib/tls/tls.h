/* TLS with OpenSSL 3 for every server and client in cryptvol: the NBD
 * server (STARTTLS), the admin API over HTTPS, and later node-to-node
 * replication.  TLS 1.3 only.
 *
 * Credentials are either X.509, from a directory laid out as nbdkit and
 * qemu expect (ca-cert.pem, server-cert.pem, server-key.pem, and for a
 * client client-cert.pem, client-key.pem), or a PSK file in the
 * "identity:hexkey" lines that nbdkit, qemu and libnbd read (psktool's
 * format).  A key or PSK file must be mode 0600 or stricter. */
#ifndef CRYPTVOL_TLS_H
#define CRYPTVOL_TLS_H

#include <openssl/ssl.h>

struct cv_tls;

struct cv_tls_config {
    const char *x509_dir;       /* NULL: no certificates */
    const char *psk_file;       /* NULL: no PSK */
    int verify_peer;            /* server: require a client certificate
                                   signed by ca-cert.pem (a client that
                                   uses a PSK from psk_file needs none) */
    int request_peer;           /* server: ask for a client certificate and
                                   verify one that is sent against
                                   ca-cert.pem, but let a client without one
                                   finish the handshake (the caller decides
                                   what an anonymous client may do, from
                                   cv_tls_peer_identity) */
    const char *psk_identity;   /* client: the PSK file's line to use
                                   (NULL: the first) */
    const char *peer_host;      /* client: the server's DNS name or IP
                                   address, checked against its certificate
                                   (NULL: any certificate from the CA) */
};

/* A server context.  At least one of x509_dir and psk_file is set.  Errors
 * name the file that failed ("tls: /etc/x/server-key.pem: ..."). */
int cv_tls_server_new(const struct cv_tls_config *cfg, struct cv_tls **out);
/* A client context (tests, the CLI over https). */
int cv_tls_client_new(const struct cv_tls_config *cfg, struct cv_tls **out);

/* Re-reads certificates and PSKs (SIGHUP).  New connections use the new
 * credentials; on failure the old ones stay and the message says why. */
int cv_tls_reload(struct cv_tls *t);

/* An SSL for one connection on fd (not yet handshaken), or NULL with a
 * message.  Thread-safe against cv_tls_reload. */
SSL *cv_tls_ssl_new(struct cv_tls *t, int fd);

/* After a handshake: who the peer is, for logs ("CN=client", "psk:alice"). */
void cv_tls_peer_name(SSL *ssl, char *buf, size_t len);

/* Who the peer proved to be, for access decisions.  Only names that
 * authentication vouches for are filled: a PSK identity from our PSK file,
 * or a client certificate that verified against ca-cert.pem.  Names are
 * printable ASCII of at most CV_TLS_NAME_MAX bytes; a name that is not (a
 * NUL inside, UTF-8, too long) is left out, never cut, so it cannot pass
 * for a shorter one. */
#define CV_TLS_NAME_MAX 255
#define CV_TLS_MAX_DNS 16
enum cv_tls_auth { CV_TLS_ANONYMOUS, CV_TLS_AUTH_CERT, CV_TLS_AUTH_PSK };
struct cv_tls_peer {
    enum cv_tls_auth auth;
    char psk[CV_TLS_NAME_MAX + 1];      /* CV_TLS_AUTH_PSK */
    char cn[CV_TLS_NAME_MAX + 1];       /* the subject's (last) commonName */
    char dns[CV_TLS_MAX_DNS][CV_TLS_NAME_MAX + 1];  /* DNS subjectAltNames */
    unsigned ndns;
};
void cv_tls_peer_identity(SSL *ssl, struct cv_tls_peer *out);

/* A cluster node's name from its identity: the CN, else the first DNS
 * subjectAltName; NULL when none was vouched for (docs/cluster.md). */
const char *cv_tls_peer_node_name(const struct cv_tls_peer *p);
/* The CN and DNS names of the (first) certificate in a PEM file, read as
 * they are (for a node's own certificate: nothing is verified). */
int cv_tls_cert_file_identity(const char *path, struct cv_tls_peer *out);

/* Why an SSL call failed with SSL_ERROR_SSL, from OpenSSL's error queue
 * (looked at, not cleared), for counters: the peer sent no certificate
 * where one is required, its certificate did not verify (another CA,
 * expired, wrong purpose), the protocol (not TLS 1.3, no common cipher,
 * not TLS at all), a record that did not decrypt or authenticate ("bad
 * record mac": corruption or tampering), or something else. */
enum cv_tls_failure { CV_TLS_FAIL_OTHER, CV_TLS_FAIL_NO_CERT,
                      CV_TLS_FAIL_VERIFY, CV_TLS_FAIL_PROTOCOL,
                      CV_TLS_FAIL_DECRYPT };
enum cv_tls_failure cv_tls_failure_of(void);

/* The last OpenSSL error queue as one line, for messages; clears it. */
const char *cv_tls_error_string(char *buf, size_t len);

void cv_tls_free(struct cv_tls *t);

/* Makes a demo CA, a server and a client certificate in dir (ca-cert.pem,
 * ca-key.pem, server-cert.pem, server-key.pem, client-cert.pem,
 * client-key.pem; keys mode 0600).  hosts are the server's DNS names or IP
 * addresses for subjectAltName (NULL-terminated; NULL means "localhost",
 * "127.0.0.1", "::1").  Refuses to overwrite existing files. */
int cv_tls_init_dir(const char *dir, const char *const *hosts,
                    const char *client_cn);

/* A node certificate of a cluster from the CA in ca_dir (ca-cert.pem,
 * ca-key.pem, as cv_tls_init_dir makes them), written to out_dir (made if
 * missing) in the same layout: ca-cert.pem (the CA's file, copied),
 * server-cert.pem and server-key.pem, client-cert.pem and client-key.pem
 * (the same certificate and key: extendedKeyUsage serverAuth and
 * clientAuth), keys mode 0600.  Subject CN=name; subjectAltName DNS:name
 * and each of hosts (NULL-terminated DNS names or IP addresses; may be
 * NULL).  name follows the node name rule (letters, digits, then '.', '_',
 * '-'; at most 64).  Refuses an out_dir that holds ca-key.pem, and any of
 * the five files that exists unless force (then each is replaced by
 * rename, so a daemon reloading reads the old or the new one whole). */
int cv_tls_issue_dir(const char *ca_dir, const char *out_dir,
                     const char *name, const char *const *hosts, int force);

#endif
