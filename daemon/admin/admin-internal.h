/* Pieces of the admin API shared by admin*.c: the HTTP layer (admin.c)
 * hands each complete request to cvd_admin_dispatch and sends back the
 * JSON it returns. */
#ifndef CRYPTVOLD_ADMIN_INTERNAL_H
#define CRYPTVOLD_ADMIN_INTERNAL_H

#include <json-c/json.h>
#include <pthread.h>
#include <stddef.h>
#include <stdint.h>
#include <time.h>

struct cvd;
struct cvd_ratelimit;

/* POST bodies larger than this are refused (413). */
#define CVD_ADMIN_BODY_MAX (1024 * 1024)
/* libmicrohttpd's memory per connection: above 32 KiB it is mapped, not
 * malloc'ed, so the request bodies it held are unmapped at the end. */
#define CVD_ADMIN_POOL_SIZE (64 * 1024)
/* HTTPS: the whole TLS handshake, and an idle connection after it. */
#define CVD_ADMIN_HANDSHAKE_S 10
#define CVD_ADMIN_HTTPS_IDLE_S 60

/* Runs one request for actor (who asked, as the audit log names them:
 * "uid=0(root)", "https:CN=ops 10.0.0.5 port 4711").  query holds the
 * URL's arguments, decoded, as an object of strings (may be NULL).
 * Returns the JSON to send (an {"error": ...} object when *status is not
 * 2xx).  body may hold a secret: the caller wipes it. */
json_object *cvd_admin_dispatch(struct cvd *d, const char *actor,
                                const char *method, const char *url,
                                json_object *query, const char *body,
                                size_t len, unsigned *status);

/* admin-forward.c.  A request about volume, whose data is on node, asked
 * here: carried out there over the peer port, its answer returned as
 * that node gave it (*answered 1).  Else (*answered 0) 503 when that node
 * cannot be reached, 409 WrongNode when it is not Online.  in: the body
 * (POST) or the query. */
json_object *cvd_admin_forward(struct cvd *d, const char *volume,
                               const char *node, const char *actor,
                               const char *method, const char *url,
                               json_object *in, unsigned *code,
                               int *answered);
/* Where a request about v goes: its writer's node when it is attached
 * (the one with the open chain and its job), else v->node; "" for a
 * single node or a record made before the cluster. */
struct cvd_volume_rec;
void cvd_admin_volume_holder(struct cvd *d, const struct cvd_volume_rec *v,
                             char node[65]);
/* 1 if actor is a request another node forwarded (never forwarded on). */
int cvd_admin_forwarded(const char *actor);
/* Takes forwarded requests on the peer port (none on a single node). */
int cvd_admin_forward_start(struct cvd *d);

/* An {"error": msg} object, and the HTTP status for a negative errno. */
json_object *cvd_admin_error(unsigned *status, unsigned code, const char *msg);
unsigned cvd_admin_status_of(int r);
/* For a failed call: the status for r and the thread's cv_error message. */
json_object *cvd_admin_fail(unsigned *status, int r);
/* The answer to a DELETE: the error of r < 0, else {"name", "deleted"}. */
json_object *cvd_admin_deleted(unsigned *status, int r, const char *name);

/* Parses body as one JSON object; NULL with *status and *err set if it is
 * not one, has a NUL character, or an object of more than FIELDS_MAX
 * members.  Every string of it that json-c frees, now or when the object
 * is put, is wiped first: bodies may hold secrets. */
#define CVD_ADMIN_FIELDS_MAX 64
#define CVD_ADMIN_FIELDS_MAX_S "64"
json_object *cvd_admin_parse(const char *body, size_t len, unsigned *status,
                             json_object **err);
/* Refuses fields not in allowed (NULL-terminated): a typo is an error,
 * not a silently ignored option. */
int cvd_admin_known_fields(json_object *o, const char *const *allowed);
/* Typed field access: 0 if absent (*out untouched), 1 if present, or
 * -EINVAL with a message naming the field. */
int cvd_admin_get_string(json_object *o, const char *key, const char **out);
int cvd_admin_get_bool(json_object *o, const char *key, int *out);
int cvd_admin_get_u64(json_object *o, const char *key, uint64_t *out);
/* A secret value sent as strict base64 (padding optional, no whitespace),
 * decoded into locked memory; messages say "secret NAME: ...". */
struct cv_secret;
int cvd_admin_decode_secret(const char *name, const char *in,
                            struct cv_secret *out);
/* "2024-05-01T12:00:00Z"; null for 0 (never) */
json_object *cvd_admin_time(int64_t t);
/* Renames the deprecated snake_case members of a request body (and of its
 * "pbkdf") to their camelCase names (admin-names.c); -EINVAL when both
 * are given. */
int cvd_admin_accept_aliases(json_object *body);
/* "BadRequest", "NotFound", ... for an HTTP status (the "code" of errors). */
const char *cvd_admin_error_name(unsigned status);

/* The endpoints: rest is the URL after the endpoint's prefix, body the
 * parsed POST or PUT body, or for other methods the URL's arguments ("?
 * since=1h" is {"since": "1h"}; NULL or {} without any). */
typedef json_object *cvd_admin_endpoint(struct cvd *d, const char *actor,
                                        const char *method, const char *rest,
                                        json_object *body, unsigned *status);
cvd_admin_endpoint cvd_admin_volumes;
cvd_admin_endpoint cvd_admin_secrets;
cvd_admin_endpoint cvd_admin_cluster;
cvd_admin_endpoint cvd_admin_audit;
cvd_admin_endpoint cvd_admin_classes;
cvd_admin_endpoint cvd_admin_nodes;     /* admin-nodes.c */
cvd_admin_endpoint cvd_admin_peer_tls;  /* /v1/node/peer-tls (admin-peer.c) */
/* GET /v1/node/stats and /v1/nodes/NAME/stats (admin-stats.c). */
int cvd_admin_is_stats(const char *url);
json_object *cvd_admin_node_stats(struct cvd *d, const char *method,
                                  const char *url, unsigned *code);
/* admin-volumes.c: a volume as GET /v1/volumes/NAME shows it. */
struct cvd_volume_rec;
json_object *cvd_admin_volume_json(struct cvd *d,
                                   const struct cvd_volume_rec *v,
                                   unsigned *code);
/* admin-replicas.c: POST /v1/volumes/NAME/replicas; and what a volume
 * with a replica set adds to its JSON (replicas, replicaCount,
 * minReplicas, epoch, writer; nothing for one without). */
json_object *cvd_admin_replicas(struct cvd *d, const char *actor,
                                const char *method, const char *volume,
                                json_object *body, unsigned *code);
void cvd_admin_replicas_json(struct cvd *d, const char *volume,
                             json_object *o);
/* admin-snapshots.c: snapshots, clones, flatten, import, export; the
 * volume's job (NULL if none). */
json_object *cvd_admin_snapshots(struct cvd *d, const char *actor,
                                 const char *method, const char *volume,
                                 const char *rest, json_object *body,
                                 unsigned *code);
json_object *cvd_admin_flatten(struct cvd *d, const char *actor,
                               const char *volume, json_object *body,
                               unsigned *code);
json_object *cvd_admin_export(struct cvd *d, const char *actor,
                              const char *volume, json_object *body,
                              unsigned *code);
json_object *cvd_admin_clone(struct cvd *d, const char *actor,
                             json_object *body, unsigned *code);
json_object *cvd_admin_import(struct cvd *d, const char *actor,
                              json_object *body, unsigned *code);
json_object *cvd_admin_job_json(struct cvd *d, const char *volume);
/* admin-backups.c: /v1/backups..., GET /v1/backup/target, and POST
 * /v1/volumes/NAME/backups (routed by admin-volumes.c). */
cvd_admin_endpoint cvd_admin_backups;
json_object *cvd_admin_backup_target(struct cvd *d, const char *method,
                                     const char *rest, unsigned *code);
json_object *cvd_admin_backup_create(struct cvd *d, const char *actor,
                                     const char *volume, json_object *body,
                                     unsigned *code);
/* GET /v1/status (admin-status.c). */
json_object *cvd_admin_status(struct cvd *d, unsigned *code);

/* NBD access lists (admin-access.c): GET or POST .../NAME/access. */
#include "meta/meta.h"
json_object *cvd_admin_access(struct cvd *d, const char *actor,
                              const char *method, enum cvd_access_target t,
                              const char *name, json_object *body,
                              unsigned *code);
/* A volume's or class's "access" object, as GET .../access shows it
 * (class_name: the volume's class, or "" / NULL). */
int cvd_admin_access_json(struct cvd *d, enum cvd_access_target t,
                          const char *name, const char *class_name,
                          json_object **out);

/* A descriptor kept open for the unix socket's acceptor to give up when
 * the process has none left, so the local administrator still gets in.
 * The HTTPS acceptor does not accept while it is given up (it would take
 * the descriptor that frees first). */
struct cvd_admin_reserve {
    pthread_mutex_t lock;
    int fd;
};
/* Reopens the reserve if it is given up; 1 if it is held. */
int cvd_admin_reserve_refill(struct cvd_admin_reserve *rs);
/* Gives the reserve up (closes it); 1 if there was one to give. */
int cvd_admin_reserve_release(struct cvd_admin_reserve *rs);

/* HTTPS on d->cfg.admin_listen: TLS done here with OpenSSL (lib/tls/tls.h),
 * the plaintext side of each connection handed to mhd through a
 * socketpair. */
struct MHD_Daemon;
struct cvd_admin_https;
int cvd_admin_https_start(struct cvd *d, struct MHD_Daemon *mhd,
                          struct cvd_ratelimit *rl,
                          struct cvd_admin_reserve *reserve,
                          struct cvd_admin_https **out);
/* How many HTTPS connections there may be at once (admin-max-connections). */
unsigned cvd_admin_https_max(const struct cvd *d);
/* Stops accepting and ends every relay.  NULL is ignored. */
void cvd_admin_https_stop(struct cvd_admin_https *h);
int cvd_admin_https_reload(struct cvd_admin_https *h);

#endif
