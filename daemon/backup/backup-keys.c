/* The MAC keys of the volumes this daemon backed up since it started, by
 * LUKS UUID, in locked memory.  A backup's manifest is authenticated with
 * a key derived from the volume key, and getting the volume key means a
 * keyslot unlock: for a user's secret an argon2id derivation of seconds
 * and hundreds of MiB, which would be most of a small incremental backup.
 * The volume key of a LUKS UUID never changes (a rekey moves keyslots, not
 * the key), so the derived key stays right; a MAC key authenticates
 * manifests and decrypts nothing. */
#include "backups-internal.h"
#include "daemon.h"
#include "core/secmem.h"

#include <errno.h>
#include <pthread.h>
#include <string.h>

int cvd_backups_keys_init(struct cvd_backups *b)
{
    b->keys = cv_secmem_alloc(CVD_BACKUP_KEYS_KEPT * CVD_BACKUP_MAC_KEY);
    return b->keys ? 0 : -ENOMEM;
}

void cvd_backups_keys_free(struct cvd_backups *b)
{
    cv_secmem_free(b->keys, CVD_BACKUP_KEYS_KEPT * CVD_BACKUP_MAC_KEY);
    b->keys = NULL;
}

int cvd_backups_mac_key_find(struct cvd *d, const char *uuid,
                             unsigned char out[CVD_BACKUP_MAC_KEY])
{
    struct cvd_backups *b = d->backups;
    int found = 0;

    if (!b || !b->keys || !uuid[0])
        return 0;
    pthread_mutex_lock(&b->lock);
    for (unsigned i = 0; i < CVD_BACKUP_KEYS_KEPT && !found; i++)
        if (!strcmp(b->key_uuid[i], uuid)) {
            memcpy(out, b->keys + i * CVD_BACKUP_MAC_KEY, CVD_BACKUP_MAC_KEY);
            found = 1;
        }
    pthread_mutex_unlock(&b->lock);
    return found;
}

void cvd_backups_mac_key_keep(struct cvd *d, const char *uuid,
                              const unsigned char key[CVD_BACKUP_MAC_KEY])
{
    struct cvd_backups *b = d->backups;
    unsigned i;

    if (!b || !b->keys || !uuid[0] || strlen(uuid) >= sizeof b->key_uuid[0])
        return;
    pthread_mutex_lock(&b->lock);
    for (i = 0; i < CVD_BACKUP_KEYS_KEPT; i++)
        if (!strcmp(b->key_uuid[i], uuid))
            break;
    /* A new one takes the oldest place. */
    if (i == CVD_BACKUP_KEYS_KEPT)
        i = b->key_next++ % CVD_BACKUP_KEYS_KEPT;
    strcpy(b->key_uuid[i], uuid);
    memcpy(b->keys + i * CVD_BACKUP_MAC_KEY, key, CVD_BACKUP_MAC_KEY);
    pthread_mutex_unlock(&b->lock);
}
