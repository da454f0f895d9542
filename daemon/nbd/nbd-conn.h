/* One NBD client connection's byte stream: a plain socket, or TLS after
 * NBD_OPT_STARTTLS.  One thread reads (cvd_conn_read) while any number of
 * threads write whole messages (cvd_conn_writev), each message written
 * without interleaving.
 *
 * OpenSSL does not allow SSL_read and SSL_write on one SSL at the same time
 * from two threads, so under TLS the socket is non-blocking and every SSL_*
 * call is made under ssl_lock, which is never held while waiting in poll():
 * the reader polls for input without it, a writer holding write_lock drops
 * ssl_lock while it polls for room. */
#ifndef CRYPTVOLD_NBD_CONN_H
#define CRYPTVOLD_NBD_CONN_H

#include <pthread.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/uio.h>

#include <openssl/ssl.h>

struct cv_tls;

struct cvd_conn {
    int fd;
    SSL *ssl;                   /* NULL until STARTTLS */
    pthread_mutex_t write_lock; /* one message at a time */
    pthread_mutex_t ssl_lock;   /* one SSL_* call at a time */
    char peer[128];             /* "127.0.0.1:40312", "unix" */
    /* Plaintext input read ahead: pipelined request headers arrive many
     * to a recv().  Used by the one reader only. */
    uint8_t *rbuf;
    size_t rpos, rlen;
    char tls_peer[128];         /* "CN=client", "psk:alice" after TLS */
    /* A TLS record failed to decrypt or authenticate (it ends the
     * session; the server counts it when the connection closes). */
    int decrypt_error;
};

/* Takes ownership of fd (a connected socket). */
void cvd_conn_init(struct cvd_conn *c, int fd);
void cvd_conn_destroy(struct cvd_conn *c);

/* Reads exactly len bytes.  -ECONNRESET when the peer closed first. */
int cvd_conn_read(struct cvd_conn *c, void *buf, size_t len);
/* Reads and drops len bytes (a refused request's payload). */
int cvd_conn_discard(struct cvd_conn *c, uint64_t len);
/* Writes all of iov as one message. */
int cvd_conn_writev(struct cvd_conn *c, const struct iovec *iov, int iovcnt);
int cvd_conn_write(struct cvd_conn *c, const void *buf, size_t len);

/* Plaintext bytes read ahead and not yet taken by cvd_conn_read. */
size_t cvd_conn_pending(const struct cvd_conn *c);

/* The server side of the TLS handshake.  Errors carry OpenSSL's reason. */
int cvd_conn_start_tls(struct cvd_conn *c, struct cv_tls *tls);

/* Wakes a reader blocked in cvd_conn_read (server shutdown); writes still
 * work so requests in flight can be answered. */
void cvd_conn_shutdown_read(struct cvd_conn *c);

#endif
