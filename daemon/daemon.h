/* One cryptvold process: its configuration and the parts it runs. */
#ifndef CRYPTVOLD_DAEMON_H
#define CRYPTVOLD_DAEMON_H

#include <pthread.h>

#include "bounds.h"
#include "luks/luks.h"

enum cvd_tls_mode { CVD_TLS_OFF, CVD_TLS_ON, CVD_TLS_REQUIRE };

#define CVD_MAX_CRYPTO_THREADS 256

/* From the config file, then the command line; strings are malloc'ed. */
struct cvd_config {
    char *data_dir;
    char *backup_target;        /* backups' directory; NULL: none */
    char *audit_dir;            /* the audit log's; default data_dir */
    char *nbd_listen;           /* "HOST:PORT", NULL: none */
    int nbd_listen_off;         /* "none" given: no TCP listener */
    char *nbd_unix;             /* NULL: none */
    char *admin_socket;
    char *admin_listen;         /* HTTPS "HOST:PORT", NULL: none */
    char *admin_tls_dir;        /* HTTPS: its own CA, certificate, key */
    char *admin_allow;          /* HTTPS: "cn:ops1,dns:ops.example" */
    unsigned admin_max_connections; /* HTTPS at once; 0: 64 */
    unsigned admin_max_per_peer;    /* HTTPS from one address; 0: 16 */
    char *metrics_listen;       /* plain HTTP /metrics "HOST:PORT"; NULL: none */
    int metrics_volume_names;   /* ... with the per-volume series */
    enum cvd_tls_mode tls_mode;
    char *tls_dir;
    char *tls_psk;
    int tls_verify_peer;
    /* Who may open volumes over NBD (volumes/access.h). */
    int nbd_allow_anonymous;    /* TLS or TCP clients with no identity */
    int nbd_access_closed;      /* a volume without allow entries: refused */
    char *nbd_unix_group;       /* the NBD socket is 0660 to it; NULL: 0600 */
    int foreground;
    int migrate_to_etcd;        /* --migrate-to-etcd (command line only) */
    int allow_core_dumps;       /* debugging; key memory stays out */
    char *pid_file;
    int log_level;
    char *log_file;             /* NULL: journal, stderr or syslog (log.h) */
    unsigned nbd_threads;       /* request workers per connection; 0: 16 */
    /* The pool that encrypts parts of a large request at once (the caller
     * is one more); 0: one per CPU but one. */
    unsigned crypto_threads;
    /* How new passphrase keyslots are made (tests use a small cost);
     * pbkdf.type points into pbkdf_type. */
    struct cv_pbkdf pbkdf;
    char *pbkdf_type;
    char *node_name;            /* default: the host name */
    /* A cluster (daemon/cluster/): metadata in etcd, peers over mTLS. */
    char *etcd_endpoints;       /* NULL: a single node on SQLite */
    char *etcd_tls_dir;
    char *etcd_prefix;          /* NULL: "/cryptvol/" */
    unsigned etcd_timeout_ms;   /* 0: 5000 */
    char *peer_listen;          /* "HOST:PORT"; NULL: none */
    char *peer_tls_dir;
    unsigned node_lease_ttl;    /* seconds; 0: 10 */
    /* peer-tls (peer/peer.h's enum cvd_peer_tls); default require.
     * SIGHUP rereads it from the configuration file. */
    int peer_tls;
    char *tpm_tcti;             /* NULL: tpm2-tss's default TCTI */
    unsigned rotation_delay_ms; /* tests: time to kill a rotation */
    unsigned backup_delay_ms;   /* tests: time to kill a backup, restore */
    /* Seconds between retries of pending volumes; 0: only when a secret
     * is created here. */
    unsigned pending_retry_interval;
    struct cvd_bounds bounds;   /* bounds.h */
};

struct cvd_audit;
struct cvd_cluster;
struct cvd_jobs;
struct cvd_keyring;
struct cvd_meta;
struct cvd_metrics;
struct cvd_node;
struct cvd_peer;
struct cvd_registry;
struct cvd_repl;
struct cv_tls;
struct cv_workers;

struct cvd {
    struct cvd_config cfg;
    struct cvd_meta *meta;
    struct cvd_registry *reg;
    struct cv_tls *tls;         /* NULL when tls_mode is off */
    struct cv_workers *workers;
    struct cvd_audit *audit;
    struct cvd_keyring *keys;   /* the cluster KEKs this node has unsealed */
    struct cvd_cluster *cluster;
    struct cvd_metrics *metrics;    /* metrics/metrics.h; NULL: none kept */
    /* Held while a LUKS header is read for a token or changed (rekey, KEK
     * re-wrap), so no one reads a header half written, and two changes
     * cannot undo each other.  Header changes take milliseconds. */
    pthread_mutex_t header_lock;
    /* The NBD server while it runs (cvd_nbd_start sets it, cvd_nbd_stop
     * clears it before freeing), for the admin API's view of who is
     * connected; read and changed under nbd_lock. */
    struct cvd_nbd *nbd;
    pthread_mutex_t nbd_lock;
    /* Merges, flattens, imports and exports running in the background
     * (volumes/jobs.h); NULL before the volumes are recovered. */
    struct cvd_jobs *jobs;
    /* A cluster on etcd: this node's membership, liveness and keys
     * (cluster/cluster.h), and its peer port (peer/peer.h); NULL on a
     * single node. */
    struct cvd_node *node;
    struct cvd_peer *peer;
    /* The backup target (backup/backup.h); NULL without backup-target. */
    struct cvd_backups *backups;
    /* Replication (repl/repl.h): the replica side and repair loop; NULL on
     * a single node. */
    struct cvd_repl *repl;
};

#endif
