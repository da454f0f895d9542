/* Shared pieces of the cryptvol command line. */
#ifndef CRYPTVOL_CLI_H
#define CRYPTVOL_CLI_H

#include <stdint.h>

#include "luks/luks.h"
#include "core/secret-file.h"

/* Exit statuses scripts rely on. */
enum {
    EXIT_OK = 0,
    EXIT_ERROR = 1,
    EXIT_USAGE = 2,
    EXIT_WRONGKEY = 3,
};

/* Prints "cryptvol: <last error>" (with --json: {"error": ..., "code":
 * ...}) and returns the exit status for r. */
int cli_fail(int r);
/* With on, errors go to stderr as one line of JSON, {"error": msg,
 * "code": "NotFound"}; set from --json by cli_parse. */
void cli_json_errors(int on);
/* "cryptvol WORDS: msg" on stderr, or its JSON form with code. */
void cli_print_error(const char *words, const char *code, const char *msg);
/* "cryptvol: warning: ..." on stderr (also with --json: stdout stays the
 * API's JSON). */
void cli_warn(const char *fmt, ...) __attribute__((format(printf, 1, 2)));

/* A passphrase or secret file ("-": standard input, not echoed on a
 * terminal), into locked memory. */
int cli_read_passphrase(const char *path, const char *what,
                        struct cv_secret *s);

struct cv_backend;
/* Offline recovery (kek-escrow.c): the passphrase of b's cryptvol-kek
 * keyslot, from the KEK escrow file opened with the recovery passphrase
 * in passfile, and that keyslot. */
int cli_kek_escrow_unlock(struct cv_backend *b, const char *escrow,
                          const char *passfile, struct cv_secret *kpass,
                          int *keyslot);

/* A volume's chain directory (DATA-DIR/volumes/NAME/, docs/store.md) for
 * the offline image commands that read (image-chain.c): info, export. */
struct cv_chain;
struct cv_volume;
struct cv_workers;
/* 1 if path is a directory holding a chain manifest. */
int cli_is_chain(const char *path);
/* Opens it read-only; cv_chain_backend(*c) is its raw image (the header,
 * then the volume's view). */
int cli_chain_open(const char *path, struct cv_chain **c);
/* Where the keys come from: the passphrase, or a KEK escrow with its
 * recovery passphrase file (then pass is unused). */
struct cli_chain_keysrc {
    const struct cv_secret *pass;
    const char *escrow, *recovery;
};
/* Unlocks every format of c (a clone's own and its own-format
 * ancestors', each with the same key source) and opens its volume
 * read-only. */
int cli_chain_volume(struct cv_chain *c, const struct cli_chain_keysrc *src,
                     struct cv_workers *w, struct cv_volume **v);

struct cli_args;
/* --pbkdf, --pbkdf-iterations, --pbkdf-memory, --pbkdf-time-ms into *p;
 * a usage error prints and returns EXIT_USAGE. */
int cli_pbkdf_args(const struct cli_args *a, struct cv_pbkdf *p);

/* VOL@SNAP, argument i of the command, checked and split: a usage error
 * ("expected VOL@SNAP") returns EXIT_USAGE when the @ or either part is
 * missing; a part that is no valid name returns -EINVAL (the message
 * names it).  Both parts are at most 64 bytes. */
#define CLI_NAME_MAX 65
int cli_snapshot_arg(const struct cli_args *a, size_t i,
                     char vol[CLI_NAME_MAX], char snap[CLI_NAME_MAX]);
/* A FILE the daemon opens (volume import, volume export) as an absolute
 * path: the directory resolved here (realpath), the last part kept.  With
 * --url, where the daemon may be on another host, an absolute FILE is
 * sent as it is and a relative one is a usage error.  0, EXIT_USAGE
 * (printed), or a negative errno with the message. */
int cli_daemon_path(const struct cli_args *a, const char *file, char *buf,
                    size_t len);

/* The daemon's long jobs (job.c): a 202 answer {"volume", "job"} starts
 * one; GET /v1/volumes/VOL shows it.  Ends the command that got accepted
 * (or the error r < 0): with --no-wait prints that answer (human: "LABEL
 * started"); else follows the job every 200 ms with progress (LABEL, done
 * of total bytes) on a terminal until it is Completed (prints done_msg,
 * or with --json the volume's final object) or Failed (its error, exit
 * 1).  Frees accepted. */
struct json_object;
int cli_job_finish(struct cli_args *a, int r, struct json_object *accepted,
                   const char *vol, const char *label, const char *done_msg);
/* The wait alone: follows the job of accepted (not freed) on vol until it
 * ends; 0 with the volume after it in *final, or the job's error (-ENOENT
 * when the volume is gone), with nothing printed but the progress. */
struct cli_admin;
int cli_job_wait(struct cli_admin *admin, struct json_object *accepted,
                 const char *vol, const char *label,
                 struct json_object **final);

/* volume info's page of a volume object (cmd-volume.c). */
void cli_print_volume(struct json_object *v);
/* POST /v1/volumes with body (volume create, volume clone): tells a
 * terminal while a key is derived, warns of a Pending volume, prints the
 * volume.  Frees body. */
int cli_volume_make(struct cli_args *a, struct json_object *body);

int cmd_image_create(struct cli_args *a);
int cmd_image_format(struct cli_args *a);
int cmd_image_info(struct cli_args *a);
int cmd_image_resize(struct cli_args *a);
int cmd_image_import(struct cli_args *a);
int cmd_image_export(struct cli_args *a);
int cmd_key_add(struct cli_args *a);
int cmd_key_remove(struct cli_args *a);
int cmd_key_change(struct cli_args *a);
/* Admin calls to cryptvold (client.h). */
int cmd_secret_create(struct cli_args *a);
int cmd_secret_list(struct cli_args *a);
int cmd_secret_update(struct cli_args *a);
int cmd_secret_delete(struct cli_args *a);
int cmd_audit(struct cli_args *a);
int cmd_node_add(struct cli_args *a);
int cmd_node_list(struct cli_args *a);
int cmd_node_remove(struct cli_args *a);
int cmd_volume_create(struct cli_args *a);
/* cmd-replicas.c: volume info's replicas table (nothing without a set). */
void cli_print_replicas(struct json_object *v);
int cmd_volume_replicas(struct cli_args *a);
int cmd_volume_list(struct cli_args *a);
int cmd_volume_info(struct cli_args *a);
int cmd_volume_resize(struct cli_args *a);
int cmd_volume_delete(struct cli_args *a);
/* Snapshots (cmd-snapshot.c) and the layers of a volume: clones, flatten,
 * raw LUKS in and out (cmd-layers.c). */
int cmd_snapshot_create(struct cli_args *a);
int cmd_snapshot_list(struct cli_args *a);
int cmd_snapshot_delete(struct cli_args *a);
int cmd_snapshot_rollback(struct cli_args *a);
int cmd_volume_clone(struct cli_args *a);
int cmd_volume_flatten(struct cli_args *a);
int cmd_volume_import(struct cli_args *a);
int cmd_volume_export(struct cli_args *a);
/* Backups to the daemon's backup target (cmd-backup.c, docs/backup.md). */
int cmd_backup_target(struct cli_args *a);
int cmd_backup_create(struct cli_args *a);
int cmd_backup_list(struct cli_args *a);
int cmd_backup_verify(struct cli_args *a);
int cmd_backup_restore(struct cli_args *a);
int cmd_backup_delete(struct cli_args *a);
int cmd_cluster_info(struct cli_args *a);
/* cmd-migrate.c: runs cryptvold --migrate-to-etcd. */
int cmd_cluster_migrate(struct cli_args *a);
int cmd_cluster_encryption_enable(struct cli_args *a);
int cmd_cluster_encryption_disable(struct cli_args *a);
int cmd_cluster_kek_rotate(struct cli_args *a);
int cmd_cluster_kek_export(struct cli_args *a);
int cmd_volume_rekey(struct cli_args *a);
int cmd_class_create(struct cli_args *a);
int cmd_class_list(struct cli_args *a);
int cmd_class_info(struct cli_args *a);
int cmd_class_delete(struct cli_args *a);
int cmd_volume_access(struct cli_args *a);
int cmd_class_access(struct cli_args *a);
/* An "access" object of the admin API, one entry a line (cmd-access.c). */
struct json_object;
void cli_print_access(struct json_object *acc, const char *indent);
int cmd_tls_init(struct cli_args *a);
int cmd_tls_issue(struct cli_args *a);
int cmd_node_stats(struct cli_args *a);
int cmd_node_peer_tls(struct cli_args *a);   /* cmd-peer-tls.c */
int cmd_status(struct cli_args *a);
/* A volume as /dev/nbdN through nbd-client (cmd-device.c). */
int cmd_device_map(struct cli_args *a);
int cmd_device_unmap(struct cli_args *a);

#endif
