/* Backup verify: the manifest authenticated with the key of the header it
 * lists, and every block it lists read back and checked against its
 * checksum and length (docs/backup.md).  A block flipped, swapped,
 * truncated or gone is a problem naming its offset and checksum; a
 * manifest changed (a block's checksum edited, a block dropped) fails its
 * MAC. */
#include "backup.h"
#include "backup-internal.h"
#include "backups-internal.h"
#include "daemon.h"
#include "core/error.h"
#include "log.h"
#include "target.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

void cvd_backup_verify_free(struct cvd_backup_verify *v)
{
    if (!v)
        return;
    free(v->problems);
    v->problems = NULL;
    v->nproblems = 0;
}

static int add_problem(struct cvd_backup_verify *v,
                       const struct cvd_manifest_block *b,
                       enum cvd_backup_problem_kind kind)
{
    struct cvd_backup_problem *p = realloc(v->problems, (v->nproblems + 1) *
                                           sizeof *p);

    if (!p)
        return cv_error(-ENOMEM, "verify: out of memory");
    v->problems = p;
    p += v->nproblems++;
    p->offset = b->offset;
    snprintf(p->sha256, sizeof p->sha256, "%s", b->sha256);
    p->kind = kind;
    return 0;
}

/* The MAC of manifest m (as read, unauthenticated) with the key of the
 * header its blocks hold: *auth the manifest read again with that key,
 * when it matches and lists the same header.  Why not, into out. */
static int authenticate(struct cvd *d, struct cvd_target *t,
                        const struct cvd_manifest *m, const char *secret,
                        struct cvd_manifest *auth,
                        struct cvd_backup_verify *out)
{
    struct cvd_backup_key k = { 0 };
    int r;

    if (m->info.state != CVD_BACKUP_COMPLETED) {
        snprintf(out->auth_error, sizeof out->auth_error, "backup %s is %s: "
                 "only a Completed backup has a MAC", m->info.id,
                 cvd_backup_state_name(m->info.state));
        return 0;
    }
    r = cvd_backup_unlock(d, t, m, secret, &k);
    if (r == 0)
        r = cvd_manifest_read(t, m->info.id, k.mac_key, auth);
    if (r == 0 && !cvd_backup_same_header(m, auth))
        r = cv_error(-EBADMSG, "backup %s: its manifest changed while it "
                     "was verified", m->info.id);
    cvd_backup_key_free(&k);
    if (r == 0) {
        out->authenticated = 1;
        return 0;
    }
    /* A wrong MAC, a missing secret, a damaged header block: the check ran
     * and says so. */
    snprintf(out->auth_error, sizeof out->auth_error, "%s", cv_last_error());
    cv_clear_error();
    return 0;
}

/* Reads each block back; what is wrong with one is a problem, an error of
 * the target itself (I/O) ends the check. */
static int check_blocks(struct cvd_target *t, const struct cvd_manifest *m,
                        struct cvd_backup_verify *out)
{
    char *buf = malloc(CVD_BACKUP_BLOCK);
    int r = buf ? 0 : cv_error(-ENOMEM, "verify: out of memory");

    for (size_t i = 0; r == 0 && i < m->nblocks; i++) {
        const struct cvd_manifest_block *b = &m->blocks[i];
        int g = cvd_target_block_get(t, b->sha256, buf, b->len);

        if (g == -ENOENT)
            r = add_problem(out, b, CVD_BACKUP_BLOCK_MISSING);
        else if (g == -EBADMSG)
            r = add_problem(out, b, CVD_BACKUP_BLOCK_CHECKSUM);
        else if (g == -EMSGSIZE)
            r = add_problem(out, b, CVD_BACKUP_BLOCK_SIZE);
        else if (g < 0)
            r = cv_error_prefix(g, "backup %s: block at offset %llu",
                                m->info.id, (unsigned long long)b->offset);
        if (g < 0 && r == 0)
            cvd_warn("backup %s: %s", m->info.id, cv_last_error());
        out->blocks++;
        out->bytes += b->len;
    }
    free(buf);
    return r;
}

int cvd_backup_verify(struct cvd *d, const char *id, const char *secret,
                      struct cvd_backup_verify *out)
{
    struct cvd_manifest m = { 0 }, auth = { 0 };
    struct cvd_target *t = NULL;
    int fd = -1, r = cvd_backup_check_id(id);

    memset(out, 0, sizeof *out);
    if (r == 0)
        r = cvd_backups_target(d, &t);
    if (r == 0)
        r = cvd_target_lock(t, CVD_TARGET_SHARED, CVD_BACKUP_LOCK_WAIT_MS,
                            &fd);
    if (r == 0 && (r = cvd_manifest_read(t, id, NULL, &m)) == -ENOENT)
        r = cv_error(-ENOENT, "backup %s: no such backup in %s", id,
                     cvd_target_dir(t));
    if (r == 0)
        r = authenticate(d, t, &m, secret, &auth, out);
    /* The blocks the authenticated manifest lists, when it is; else those
     * of the one read, for what they can tell. */
    if (r == 0)
        r = check_blocks(t, out->authenticated ? &auth : &m, out);
    if (fd >= 0)
        cvd_target_unlock(fd);
    cvd_manifest_free(&m);
    cvd_manifest_free(&auth);
    if (r < 0)
        cvd_backup_verify_free(out);
    else
        cvd_info("backup %s: verified: %s, %zu problems in %llu blocks", id,
                 out->authenticated ? "authenticated" : out->auth_error,
                 out->nproblems, (unsigned long long)out->blocks);
    return r;
}
