/* What the target's files share inside backup/ (target*.c): paths, the
 * durable write of a file, and the messages of a full target. */
#ifndef CRYPTVOLD_BACKUP_TARGET_INTERNAL_H
#define CRYPTVOLD_BACKUP_TARGET_INTERNAL_H

#include <limits.h>
#include <stddef.h>
#include <stdint.h>

#include "target.h"

struct cvd_target {
    char dir[PATH_MAX];
};

/* Temporary files start with this in the directory of the file they
 * become; cvd_target_collect removes the ones a cut left. */
#define CVD_TARGET_TMP ".tmp-"
#define CVD_TARGET_MARKER "cryptvol-backup"
#define CVD_TARGET_FORMAT 1

/* t->dir "/" and the rest as printf: -ENAMETOOLONG with a message. */
int cvd_target_path(const struct cvd_target *t, char *buf, size_t len,
                    const char *fmt, ...)
    __attribute__((format(printf, 4, 5)));

/* The message of a failed call on the target's file what: -ENOSPC (and
 * EDQUOT, which is also "full") as "backup target DIR is full: what: ...",
 * any other as "backup target DIR: what: ...".  err is a positive errno;
 * returns its negative. */
int cvd_target_fail(const struct cvd_target *t, int err, const char *what,
                    const char *op);

/* Writes len bytes as the file path (in the target): a temporary file in
 * the same directory, fdatasync, rename over path, fsync of the directory.
 * Nothing of the temporary file is left when it fails.  what names the
 * file in messages. */
int cvd_target_write_file(const struct cvd_target *t, const char *path,
                          const void *buf, size_t len, const char *what);
/* fsync of directory path. */
int cvd_target_sync_dir(const struct cvd_target *t, const char *path,
                        const char *what);
/* mkdir path unless it exists; a new one is made durable in its parent. */
int cvd_target_mkdir(const struct cvd_target *t, const char *path,
                     const char *what);

/* Reads the whole of file path (at most max bytes) into a malloc'ed
 * buffer with a NUL after its *len bytes.  -ENOENT missing (no message),
 * -EFBIG past max. */
int cvd_target_read_file(const struct cvd_target *t, const char *path,
                         size_t max, char **out, size_t *len,
                         const char *what);

/* Calls fn on every file of blocks/AB/CD/ (block or temporary file). */
struct stat;
int cvd_target_walk_blocks(const struct cvd_target *t,
                           int (*fn)(const char *path, const char *name,
                                     const struct stat *st, void *arg),
                           void *arg);

/* 1 if s is 64 lower-case hex digits (a SHA-256 as the target names it). */
int cvd_target_hex_ok(const char *s);
/* 1 if s is an id as cvd_target_new_id makes them ("bk-" + 16 hex). */
int cvd_target_id_ok(const char *s);

/* The manifest's JSON (target-json.c): m as the bytes written to
 * backups/ID.json, and back, checking everything (-EBADMSG naming id). */
int cvd_manifest_encode(const struct cvd_manifest *m, char **out,
                        size_t *len);
int cvd_manifest_decode(const char *id, const char *text, size_t len,
                        int with_blocks, struct cvd_manifest *out);

#endif
