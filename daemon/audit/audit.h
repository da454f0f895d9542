/* The audit log: every key event, with its time and who caused it, never
 * with key material.  AUDIT-DIR/audit.log (the audit-dir option), mode
 * 0600, one JSON object per line, appended with one write(2) per event under O_APPEND and fsync'ed:
 *   {"time": "2026-11-23T10:00:00Z", "node": "n1",
 *    "actor": "uid=0(root) pid=123",
 *    "event": "volume.unlock", "object": "volume/db1", "result": "ok",
 *    "detail": "keyslot 1, KEK generation 2"}
 *
 * Events: secret.create, secret.update, secret.delete, volume.create,
 * volume.delete, volume.unlock (result ok or refused), volume.rekey,
 * cluster.encryption.enable, cluster.encryption.disable (refused),
 * kek.rotation.start, kek.rotation.finish, kek.export, access.change,
 * volume.access (an NBD client refused a volume: refused only),
 * nbd.authenticate (an anonymous NBD client refused, once a connection).
 *
 * Callers pass names and outcomes, never values: no secret, passphrase,
 * key or any encoding of one may go into actor, object or detail (an error
 * message is fine: none of ours quotes a value).  "detail" is left out
 * when there is none.  Strings are cut to a few hundred bytes and bytes
 * that are not UTF-8 become U+FFFD, so every line is valid JSON. */
#ifndef CRYPTVOLD_AUDIT_H
#define CRYPTVOLD_AUDIT_H

#include <json-c/json.h>
#include <stddef.h>
#include <stdint.h>

struct cvd_audit;

/* Opens DIR/audit.log (DIR: the audit-dir option, default the data
 * directory), creating it mode 0600.  An existing file that
 * group or others can access, or that another user owns, is refused. */
int cvd_audit_open(const char *data_dir, struct cvd_audit **out);
/* NULL is ignored. */
void cvd_audit_close(struct cvd_audit *a);

/* The node every event names ("node": NAME, after "time"); set before
 * the first event.  A log with none set writes no "node" field. */
void cvd_audit_set_node(struct cvd_audit *a, const char *node);

/* A cluster: every event the local file records is also appended to the
 * cluster-wide log in m (audit_append), from a bounded in-memory queue
 * that a thread of its own sends, retrying while the store is
 * unreachable.  The local file stays the one a key operation must be able
 * to write.  Once, after m is open; 0 for a NULL a. */
struct cvd_meta;
int cvd_audit_set_cluster(struct cvd_audit *a, struct cvd_meta *m);
/* 1 once cvd_audit_set_cluster was called. */
int cvd_audit_clustered(struct cvd_audit *a);
/* The cluster-wide log (audit_read of the store), after waiting a moment
 * for this node's queued events to reach it; cvd_audit_read on a single
 * node.  Returns 0 or a negative errno. */
int cvd_audit_read_cluster(struct cvd_audit *a, int64_t since,
                           int (*cb)(void *arg, json_object *event),
                           void *arg);
/* The queue to the cluster's log, for the metrics (zeros on one node). */
struct cvd_audit_remote_counts {
    uint64_t sent, failures, dropped, queued;
};
void cvd_audit_remote_counts(struct cvd_audit *a,
                             struct cvd_audit_remote_counts *out);

/* Appends one event; ok selects result "ok" or "refused".  detail is a
 * printf format (may be NULL).  A failed write is logged; returns it.  The
 * thread's cv_last_error() is left as it was, so a caller can record a
 * refusal with that message as detail and then report it.  a NULL a (a
 * test without a log) records nothing. */
int cvd_audit(struct cvd_audit *a, const char *actor, const char *event,
              const char *object, int ok, const char *detail, ...)
    __attribute__((format(printf, 6, 7)));

/* Events whose write failed since the log was opened (metrics); 0 for a
 * NULL a. */
uint64_t cvd_audit_write_failures(struct cvd_audit *a);

/* Key operations (unlock, rekey, KEK export, rotation, secret changes)
 * are refused when their event cannot be recorded (docs/keys.md).
 * cvd_audit_refuse: the message for one whose event failed with err
 * (cvd_audit's result); returns err.  cvd_audit_check: before one that
 * cannot be undone, refuses (as cvd_audit_refuse) if the log's file system
 * is too full for an event; 0 otherwise or for a NULL a.  what: "volume
 * db1: unlock". */
int cvd_audit_refuse(struct cvd_audit *a, int err, const char *what);
int cvd_audit_check(struct cvd_audit *a, const char *what);

/* Refused attempts (ok 0) are what a client can cause at will: per event,
 * object and client (the actor without its port), the first burst a
 * minute are recorded; the rest are counted and recorded as one refused
 * event whose detail says how many and from when to when, once their
 * minute is over or at close.  Successful events are always recorded.
 * Default 10 (audit-refused-burst). */
void cvd_audit_set_refused_burst(struct cvd_audit *a, unsigned burst);

/* Calls cb with each event at or after since (seconds since the epoch;
 * 0 for all), oldest first; the event is cb's to json_object_get.  Stops
 * when cb returns non-zero.  A line that is not a whole event (one torn by
 * a crash mid-write) is skipped, not an error.  Returns the number of lines
 * skipped, or a negative errno (cb's, if it returned one). */
int cvd_audit_read(struct cvd_audit *a, int64_t since,
                   int (*cb)(void *arg, json_object *event), void *arg);

/* "2026-11-23T10:00:00Z" into buf (32 bytes is enough). */
void cvd_audit_format_time(int64_t t, char *buf, size_t len);
/* An RFC 3339 date-time ("2026-11-23T10:00:00Z", "...T11:00:00+01:00",
 * fractions of a second ignored) into seconds since the epoch; -EINVAL,
 * without a message, if s is not one. */
int cvd_audit_parse_time(const char *s, int64_t *out);
/* What GET /v1/audit?since= takes: seconds since the epoch, an RFC 3339
 * date-time, or an age before now ("90s", "10m", "2h", "1d").  -EINVAL with
 * a message saying so otherwise. */
int cvd_audit_parse_since(const char *s, int64_t now, int64_t *out);

#endif
