/* cryptvold: serves encrypted volumes over NBD and answers the admin API.
 *
 * Startup order matters: everything that can fail (config, TLS credentials,
 * metadata, listening sockets) happens before the process detaches, so an
 * operator sees the error and a non-zero exit status on the terminal. */
#include "admin/admin.h"
#include "keys/cluster-kek.h"
#include "audit/audit.h"
#include "cluster/cluster.h"
#include "config.h"
#include "daemon.h"
#include "core/error.h"
#include "export/export.h"
#include "keys/keyring.h"
#include "log.h"
#include "meta/meta.h"
#include "metrics/metrics.h"
#include "migrate/migrate.h"
#include "notify.h"
#include "nbd/nbd-server.h"
#include "peer/peer.h"
#include "repl/repl.h"
#include "tls/tls.h"
#include "volumes/volumes.h"
#include "volumes/jobs.h"
#include "backup/backup.h"
#include "volumes/snapshots.h"
#include "volumes/volumes-util.h"
#include "core/workers.h"
#include "crypto/xts.h"

#include <errno.h>
#include <fcntl.h>
#include <getopt.h>
#include <pthread.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/file.h>
#include <sys/resource.h>
#include <sys/prctl.h>
#include <sys/stat.h>
#include <unistd.h>

#define MAX_KEYS 64

static void usage(FILE *f)
{
    fprintf(f, "usage: cryptvold [--config FILE] [OPTION]...\n\n");
    for (const struct cvd_config_key *k = cvd_config_keys; k->name; k++)
        fprintf(f, "  --%s%s\n      %s\n", k->name,
                k->has_value ? " VALUE" : "", k->help);
    fprintf(f, "  --config FILE\n      read settings first from FILE "
            "(key = value lines)\n");
    fprintf(f, "  --migrate-to-etcd\n      move this stopped node's "
            "metadata into an empty etcd prefix, founding a cluster, and "
            "exit (cryptvol cluster migrate)\n");
}

/* Long options from the config key table; indexes 0..n-1 are keys. */
static void build_options(struct option *opts)
{
    int i = 0;

    for (; cvd_config_keys[i].name; i++)
        opts[i] = (struct option){ cvd_config_keys[i].name,
            cvd_config_keys[i].has_value ? required_argument
                                         : optional_argument, NULL, i };
    opts[i++] = (struct option){ "config", required_argument, NULL, 'c' };
    opts[i++] = (struct option){ "help", no_argument, NULL, 'h' };
    opts[i++] = (struct option){ "version", no_argument, NULL, 'V' };
    /* A one-shot, so no config key: a config file saying it would make
     * every start of the service a migration. */
    opts[i++] = (struct option){ "migrate-to-etcd", no_argument, NULL, 'm' };
    opts[i] = (struct option){ NULL, 0, NULL, 0 };
}

/* The config file (SIGHUP rereads its peer-tls), or NULL. */
static const char *config_path;

/* The config file first, so flags override it whatever their order. */
static int load_config_file(int argc, char **argv, struct cvd_config *c)
{
    for (int i = 1; i < argc; i++) {
        if (!strcmp(argv[i], "--config") && i + 1 < argc)
            config_path = argv[i + 1];
        else if (!strncmp(argv[i], "--config=", 9))
            config_path = argv[i] + 9;
        else
            continue;
        return cvd_config_load(c, config_path);
    }
    return 0;
}

/* Returns 0 to run, 1 to exit successfully (help), or an exit status. */
static int parse_args(int argc, char **argv, struct cvd_config *c)
{
    struct option opts[MAX_KEYS + 5];
    int opt;

    build_options(opts);
    if (load_config_file(argc, argv, c) < 0) {
        fprintf(stderr, "cryptvold: %s\n", cv_last_error());
        return 2;
    }
    while ((opt = getopt_long(argc, argv, ":", opts, NULL)) != -1) {
        if (opt == 'h') {
            usage(stdout);
            return 1;
        }
        if (opt == 'V') {
            printf("cryptvold %s\n", CRYPTVOL_VERSION);
            return 1;
        }
        if (opt == 'c')
            continue;
        if (opt == 'm') {
            c->migrate_to_etcd = 1;
            continue;
        }
        if (opt == '?' || opt == ':') {
            fprintf(stderr, "cryptvold: %s option %s (try --help)\n",
                    opt == '?' ? "unknown" : "missing value for",
                    argv[optind - 1]);
            return 2;
        }
        if (cvd_config_set(c, cvd_config_keys[opt].name, optarg) < 0) {
            fprintf(stderr, "cryptvold: %s\n", cv_last_error());
            return 2;
        }
    }
    if (optind < argc) {
        fprintf(stderr, "cryptvold: unexpected argument \"%s\"\n",
                argv[optind]);
        return 2;
    }
    if (cvd_config_finish(c) < 0) {
        fprintf(stderr, "cryptvold: %s\n", cv_last_error());
        return 2;
    }
    return 0;
}

/* Forks; the parent waits for the child to report readiness on a pipe and
 * exits with 0 if it did, 1 if the child died first.  Returns the pipe's
 * write end in the child. */
static int detach(void)
{
    int fds[2];
    pid_t pid;
    char ok;

    if (pipe2(fds, O_CLOEXEC) < 0)
        return cv_error(-errno, "pipe: %s", strerror(errno));
    pid = fork();
    if (pid < 0)
        return cv_error(-errno, "fork: %s", strerror(errno));
    if (pid > 0) {
        close(fds[1]);
        _exit(read(fds[0], &ok, 1) == 1 ? 0 : 1);
    }
    close(fds[0]);
    setsid();
    return fds[1];
}

/* The parent exits once told; stdin, stdout and (log.c) stderr leave the
 * terminal, which may close any time after. */
static void announce_ready(int fd)
{
    int devnull = open("/dev/null", O_RDWR | O_CLOEXEC);

    if (devnull >= 0) {
        dup2(devnull, STDIN_FILENO);
        dup2(devnull, STDOUT_FILENO);
        close(devnull);
    }
    if (write(fd, "1", 1) != 1)
        cvd_warn("could not tell the parent process we are ready");
    close(fd);
}

static int write_pid_file(const char *path)
{
    FILE *f = fopen(path, "we");

    if (!f)
        return cv_error(-errno, "pid file %s: %s", path, strerror(errno));
    fprintf(f, "%ld\n", (long)getpid());
    if (fclose(f) != 0)
        return cv_error(-errno, "pid file %s: %s", path, strerror(errno));
    return 0;
}

static int make_dir(const char *what, const char *dir)
{
    struct stat st;

    if (mkdir(dir, 0700) < 0 && errno != EEXIST)
        return cv_error(-errno, "%s %s: %s", what, dir, strerror(errno));
    if (stat(dir, &st) < 0 || !S_ISDIR(st.st_mode))
        return cv_error(-ENOTDIR, "%s %s: not a directory", what, dir);
    return 0;
}

/* One daemon per data directory: two would both write the metadata and
 * the images.  The lock lives as long as the process (fd never closed). */
static int lock_data_dir(const char *dir)
{
    char path[4096], pid[32] = "";
    int fd;
    ssize_t n;

    snprintf(path, sizeof path, "%s/cryptvold.lock", dir);
    fd = open(path, O_RDWR | O_CREAT | O_CLOEXEC, 0600);
    if (fd < 0)
        return cv_error(-errno, "data dir %s: lock file: %s", dir,
                        strerror(errno));
    if (flock(fd, LOCK_EX | LOCK_NB) < 0) {
        int err = errno;

        n = pread(fd, pid, sizeof pid - 1, 0);
        pid[n > 0 ? n : 0] = '\0';
        pid[strcspn(pid, "\n")] = '\0';
        close(fd);
        if (err == EWOULDBLOCK)
            return cv_error(-EBUSY, "data dir %s: another cryptvold "
                            "(pid %s) is using it", dir, *pid ? pid : "?");
        return cv_error(-err, "data dir %s: lock: %s", dir, strerror(err));
    }
    n = snprintf(pid, sizeof pid, "%ld\n", (long)getpid());
    if (ftruncate(fd, 0) < 0 || pwrite(fd, pid, (size_t)n, 0) != n)
        cvd_warn("data dir %s: could not write our pid to the lock file",
                 dir);
    return 0;
}

static int start_tls(struct cvd *d)
{
    struct cv_tls_config tc = {
        .x509_dir = d->cfg.tls_dir,
        .psk_file = d->cfg.tls_psk,
        .verify_peer = d->cfg.tls_verify_peer,
        /* Client certificates are always asked for and verified: one is
         * how an NBD client authenticates (nbd/nbd-access.c). */
        .request_peer = 1,
    };

    if (d->cfg.tls_mode == CVD_TLS_OFF)
        return 0;
    return cv_tls_server_new(&tc, &d->tls);
}

/* Descriptors: the soft limit goes up to the hard one, so that the NBD
 * connection limit derived from it (nbd-limits.c) is as high as allowed
 * and what it leaves keeps the admin socket reachable. */
static void raise_nofile(void)
{
    struct rlimit rl;

    if (getrlimit(RLIMIT_NOFILE, &rl) < 0 || rl.rlim_cur >= rl.rlim_max)
        return;
    rl.rlim_cur = rl.rlim_max;
    if (setrlimit(RLIMIT_NOFILE, &rl) < 0)
        cvd_warn("RLIMIT_NOFILE: cannot raise the soft limit to %llu: %s",
                 (unsigned long long)rl.rlim_max, strerror(errno));
}

/* Keys out of core dumps: the process is not dumpable (nor ptrace-able by
 * the same uid) unless allow-core-dumps says so, and libgcrypt's secure
 * memory, which holds the key schedules, is locked and MADV_DONTDUMP
 * either way.  After detach(): a forked child does not inherit mlock. */
static int protect_keys(const struct cvd_config *c)
{
    int r;

    if (prctl(PR_SET_DUMPABLE, c->allow_core_dumps ? 1 : 0, 0, 0, 0) != 0)
        return cv_error(-errno, "prctl(PR_SET_DUMPABLE): %s", strerror(errno));
    if (c->allow_core_dumps)
        cvd_warn("allow-core-dumps: this process may dump core (key memory "
                 "is still left out of the dump)");
    r = cv_xts_init();
    return r < 0 ? cv_error_prefix(r, "key memory") : 0;
}

/* --migrate-to-etcd: the data dir locked (no daemon may run on it),
 * then the one-shot. */
static int migrate_and_exit(struct cvd *d)
{
    int r = make_dir("data dir", d->cfg.data_dir);

    if (r == 0)
        r = lock_data_dir(d->cfg.data_dir);
    if (r == 0)
        r = cvd_migrate_to_etcd(d);
    if (r < 0)
        cvd_err("migrate-to-etcd: %s", cv_last_error());
    cvd_config_free(&d->cfg);
    return r < 0 ? 1 : 0;
}

/* SQLite on a single node; etcd for a cluster (etcd-endpoints). */
static int open_meta(struct cvd *d)
{
    char src[256];
    struct cvd_etcd_config ec = {
        .endpoints = d->cfg.etcd_endpoints,
        .tls_dir = d->cfg.etcd_tls_dir,
        .prefix = d->cfg.etcd_prefix ? d->cfg.etcd_prefix : "/cryptvol/",
        .timeout_ms = d->cfg.etcd_timeout_ms,
        .source = src,
    };

    if (!d->cfg.etcd_endpoints)
        return cvd_meta_open_sqlite(d->cfg.data_dir, &d->meta);
    /* From the peer-listen host, as the peer connections: a node's
     * traffic to etcd is told from another's by its address. */
    cvd_peer_own_host(d->cfg.peer_listen, src, sizeof src);
    return cvd_meta_open_etcd(&ec, &d->meta);
}

struct running {
    struct cvd_nbd *nbd;
    struct cvd_admin *admin;
    struct cvd_metrics_http *metrics;
    struct cvd_pending *pending;
};

static int repl_attach(void *opaque, const char *volume, struct cv_chain *c,
                       void **writer)
{
    struct cvd_repl_writer *w = NULL;
    int r = cvd_repl_attach(opaque, volume, c, &w);

    *writer = w;
    return r;
}

static int repl_attach_remote(void *opaque, const char *volume,
                              const char *snapshot, struct cv_chain **c,
                              struct cv_backend **store, void **writer)
{
    struct cvd_repl_writer *w = NULL;
    int r = cvd_repl_attach_remote(opaque, volume, snapshot, c, store, &w);

    *writer = w;
    return r;
}

static void repl_detach(void *opaque, void *writer)
{
    (void)opaque;
    cvd_repl_detach(writer);
}

static int start(struct cvd *d, struct running *run)
{
    int r = make_dir("data dir", d->cfg.data_dir);

    raise_nofile();
    if (r == 0)
        r = lock_data_dir(d->cfg.data_dir);
    if (r == 0)
        r = cvd_metrics_new(&d->metrics);
    /* Before anything that can change a key: no event goes unrecorded. */
    if (r == 0 && strcmp(d->cfg.audit_dir, d->cfg.data_dir))
        r = make_dir("audit dir", d->cfg.audit_dir);
    if (r == 0)
        r = cvd_audit_open(d->cfg.audit_dir, &d->audit);
    if (r == 0)
        cvd_audit_set_node(d->audit, d->cfg.node_name);
    if (r == 0)
        cvd_audit_set_refused_burst(d->audit,
                                    d->cfg.bounds.audit_refused_burst);
    if (r == 0)
        r = start_tls(d);
    if (r == 0)
        r = cv_workers_new(d->cfg.crypto_threads, &d->workers);
    if (r == 0)
        cvd_space_at_start(d);
    if (r == 0)
        r = open_meta(d);
    /* A cluster's events also go to its shared log (audit/audit.h). */
    if (r == 0 && d->meta->clustered)
        r = cvd_audit_set_cluster(d->audit, d->meta);
    /* The peer port checks members in the store (peer/peer.h). */
    if (r == 0 && d->cfg.peer_listen)
        r = cvd_peer_start(d, NULL, NULL, &d->peer);
    if (r == 0)
        r = cvd_registry_new(cvd_volumes_resolve, cvd_volumes_unlock,
                             cvd_volumes_list, d,
                             d->workers, &d->reg);
    if (r == 0)
        cvd_registry_set_unlock_limits(d->reg, d->cfg.bounds.max_unlocks,
                                       d->cfg.bounds.unlock_retry_delay);
    if (r == 0)
        r = cvd_keyring_new(d, &d->keys);
    if (r == 0)
        r = cvd_cluster_new(d, &d->cluster);
    /* A cluster member: the seal key and KEKs before anything uses them. */
    if (r == 0)
        r = cvd_node_start(d);
    /* Replication: the replica side's handlers, the repair loop, and the
     * writer's hook on every writable open (repl/repl.h). */
    if (r == 0)
        r = cvd_repl_start(d);
    if (r == 0 && d->repl)
        cvd_registry_set_writer(d->reg, repl_attach, repl_detach, d);
    if (r == 0 && d->repl)
        cvd_registry_set_remote(d->reg, repl_attach_remote);
    if (r == 0)
        r = cvd_jobs_new(&d->jobs);
    if (r == 0)
        r = cvd_volumes_recover(d);
    if (r == 0)
        r = cvd_snapshots_resume(d);
    if (r == 0)
        r = cvd_cluster_resume(d->cluster);
    /* The target once the volumes are recovered (backup/backup.h). */
    if (r == 0)
        r = cvd_backups_start(d);
    if (r == 0)
        r = cvd_admin_start(d, &run->admin);
    if (r == 0)
        r = cvd_metrics_http_start(d, &run->metrics);
    if (r == 0)
        r = cvd_nbd_start(d, &run->nbd);
    /* In a cluster the store's watch retries pending volumes when a
     * secret or class appears (cluster/): no polling. */
    if (r == 0)
        r = cvd_pending_start(d, d->node ? 0 : d->cfg.pending_retry_interval,
                              &run->pending);
    if (r == 0)
        r = cvd_node_serve(d);
    if (r == 0 && d->cfg.pid_file)
        r = write_pid_file(d->cfg.pid_file);
    return r;
}

/* Connections first, so no request runs while volumes are closed. */
static void stop(struct cvd *d, struct running *run)
{
    /* The peer port stays up for the writers' last requests below; the
     * admin requests it forwards (which use the volumes) stop now. */
    if (d->peer)
        cvd_peer_handle(d->peer, CVD_PEER_ADMIN, NULL, NULL);
    if (run->nbd)
        cvd_nbd_stop(run->nbd);
    if (run->admin)
        cvd_admin_stop(run->admin);
    cvd_metrics_http_stop(run->metrics);
    cvd_pending_stop(run->pending);
    /* Merges and copies stop at their next step; a restart resumes them. */
    cvd_jobs_free(d->jobs);
    d->jobs = NULL;
    cvd_backups_stop(d);
    /* Volumes closed while the peer port and the node's lease still work:
     * their writers flush on every replica and let go cleanly; then the
     * replica side and the repair loop stop, then the peer port. */
    cvd_repl_stop_repair(d);   /* it opens volumes through the registry */
    cvd_registry_free(d->reg);
    d->reg = NULL;
    cvd_repl_stop(d);
    cvd_peer_stop(d->peer);
    d->peer = NULL;
    /* The node first: its watch calls the rotation's listener until then
     * (and revoking the lease frees the rotation's lock). */
    cvd_node_stop(d);
    cvd_cluster_free(d->cluster);
    cvd_audit_close(d->audit);
    cvd_keyring_free(d->keys);
    cvd_meta_close(d->meta);
    cvd_node_free(d);           /* after the store's watch has stopped */
    cv_workers_free(d->workers);
    cv_tls_free(d->tls);
    cvd_metrics_free(d->metrics);
    if (d->cfg.pid_file)
        unlink(d->cfg.pid_file);
}

/* SIGHUP: the NBD and the admin HTTPS credentials; each keeps its old
 * ones if the new cannot be read. */
static void reload_tls(struct cvd *d, struct running *run)
{
    if (!d->tls && !d->cfg.admin_listen) {
        cvd_info("SIGHUP: TLS is off, nothing to reload");
        return;
    }
    if (d->tls && cv_tls_reload(d->tls) < 0)
        cvd_err("SIGHUP: NBD keeps the old TLS credentials: %s",
                cv_last_error());
    else if (d->tls)
        cvd_info("SIGHUP: NBD TLS credentials reloaded");
    if (cvd_admin_reload_tls(run->admin) < 0)
        cvd_err("SIGHUP: admin HTTPS keeps the old certificates: %s",
                cv_last_error());
    else if (d->cfg.admin_listen)
        cvd_info("SIGHUP: admin HTTPS certificates reloaded");
}

/* SIGHUP: peer-tls as the config file says now (the file is what
 * lasts: a mode set by the API holds until the next SIGHUP or restart). */
static void reload_peer_tls(struct cvd *d)
{
    enum cvd_peer_tls old;
    char object[CVD_NAME_MAX + 8];
    int mode;

    if (!d->peer)
        return;
    old = cvd_peer_get_tls(d->peer);
    if (!config_path || cvd_config_reread_peer_tls(config_path, &mode) < 0) {
        cvd_err("SIGHUP: peer-tls stays %s: %s", cvd_peer_tls_name(old),
                config_path ? cv_last_error() : "no config file");
        return;
    }
    if ((enum cvd_peer_tls)mode == old)
        return;
    if (cvd_peer_set_tls(d->peer, (enum cvd_peer_tls)mode) < 0) {
        cvd_err("SIGHUP: %s", cv_last_error());
        return;
    }
    d->cfg.peer_tls = mode;
    snprintf(object, sizeof object, "node/%s", d->cfg.node_name);
    cvd_audit(d->audit, "SIGHUP", "peer.tls", object, 1, "%s (was %s)",
              cvd_peer_tls_name((enum cvd_peer_tls)mode),
              cvd_peer_tls_name(old));
}

/* SIGHUP: the log file first (logrotate has renamed it), then TLS; the
 * service manager sees the reload start and end. */
static void reload(struct cvd *d, struct running *run)
{
    cvd_notify_reloading();
    if (cvd_log_reopen() < 0)
        cvd_err("SIGHUP: still logging to the old file: %s", cv_last_error());
    else if (d->cfg.log_file)
        cvd_info("SIGHUP: log file %s reopened", d->cfg.log_file);
    reload_tls(d, run);
    if (d->peer && cvd_peer_reload(d->peer) < 0)
        cvd_err("SIGHUP: the peer port keeps the old certificates: %s",
                cv_last_error());
    reload_peer_tls(d);
    cvd_notify_ready();
}

/* Signals arrive here only: every thread inherits the blocked mask. */
static void serve_signals(struct cvd *d, struct running *run,
                          const sigset_t *set)
{
    for (;;) {
        int sig = sigwaitinfo(set, NULL);

        if (sig < 0)
            continue;
        if (sig == SIGHUP) {
            reload(d, run);
            continue;
        }
        cvd_notify_stopping();
        cvd_info("%s: flushing volumes and exiting",
                 sig == SIGTERM ? "SIGTERM" : "SIGINT");
        return;
    }
}

int main(int argc, char **argv)
{
    struct cvd d = { 0 };
    struct running run = { 0 };
    sigset_t set;
    int r, ready_fd = -1;

    cvd_config_defaults(&d.cfg);
    pthread_mutex_init(&d.header_lock, NULL);
    pthread_mutex_init(&d.nbd_lock, NULL);
    r = parse_args(argc, argv, &d.cfg);
    if (r != 0) {
        cvd_config_free(&d.cfg);
        return r == 1 ? 0 : r;
    }
    /* Before detaching, so that a log file or NOTIFY_SOCKET that cannot
     * be used is said on the terminal. */
    if (cvd_notify_init() < 0 ||
        cvd_log_open(d.cfg.log_level, d.cfg.log_file, !d.cfg.foreground) < 0) {
        fprintf(stderr, "cryptvold: %s\n", cv_last_error());
        cvd_config_free(&d.cfg);
        return 1;
    }
    signal(SIGPIPE, SIG_IGN);
    sigemptyset(&set);
    sigaddset(&set, SIGTERM);
    sigaddset(&set, SIGINT);
    sigaddset(&set, SIGHUP);
    pthread_sigmask(SIG_BLOCK, &set, NULL);

    /* Before any thread exists: fork() and threads do not mix. */
    if (!d.cfg.foreground && (ready_fd = detach()) < 0) {
        fprintf(stderr, "cryptvold: %s\n", cv_last_error());
        return 1;
    }
    r = protect_keys(&d.cfg);
    if (r == 0 && d.cfg.migrate_to_etcd)
        return migrate_and_exit(&d);
    if (r == 0)
        r = start(&d, &run);
    if (r < 0) {
        cvd_err("%s", cv_last_error());
        stop(&d, &run);
        cvd_config_free(&d.cfg);
        return 1;
    }
    /* The addresses bound were logged by the listeners (with port 0 the
     * configured ones say nothing). */
    cvd_info("cryptvold %s: data in %s, serving", CRYPTVOL_VERSION,
             d.cfg.data_dir);
    cvd_notify_ready();
    cvd_log_ready(ready_fd >= 0);
    if (ready_fd >= 0)
        announce_ready(ready_fd);
    serve_signals(&d, &run, &set);
    stop(&d, &run);
    cvd_config_free(&d.cfg);
    return 0;
}
