/* The audit log: every key event, with its time and who caused it, never
 * with key material.  DATA-DIR/audit.log, mode 0600, one JSON object per
 * line, appended with one write(2) per event under O_APPEND and fsync'ed:
 *   {"time": "2026-11-23T10:00:00Z", "actor": "uid=0(root) pid=123",
 *    "event": "volume.unlock", "object": "volume/db1", "result": "ok",
 *    "detail": "keyslot 1, KEK generation 2"}
 *
 * Events: secret.create, secret.update, secret.delete, volume.create,
 * volume.delete, volume.unlock (result ok or refused), volume.rekey,
 * cluster.encryption.enable, cluster.encryption.disable (refused),
 * kek.rotation.start, kek.rotation.finish, kek.export. */
#ifndef CRYPTVOLD_AUDIT_H
#define CRYPTVOLD_AUDIT_H

#include <json-c/json.h>
#include <stdint.h>

struct cvd_audit;

int cvd_audit_open(const char *data_dir, struct cvd_audit **out);
/* NULL is ignored. */
void cvd_audit_close(struct cvd_audit *a);

/* Appends one event; ok selects result "ok" or "refused".  detail is a
 * printf format (may be NULL).  A failed write is logged; returns it. */
int cvd_audit(struct cvd_audit *a, const char *actor, const char *event,
              const char *object, int ok, const char *detail, ...)
    __attribute__((format(printf, 6, 7)));

/* Calls cb with each event at or after since (seconds since the epoch;
 * 0 for all), oldest first.  Stops when cb returns non-zero. */
int cvd_audit_read(struct cvd_audit *a, int64_t since,
                   int (*cb)(void *arg, json_object *event), void *arg);

#endif
