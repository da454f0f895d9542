/* The parts of the metadata store common to every backend: sealing secret
 * values under the node key, and names. */
#include "meta.h"
#include "core/error.h"
#include "crypto/seal.h"
#include "keys/nodekey.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

void cvd_meta_close(struct cvd_meta *m)
{
    if (m)
        m->ops->close(m);
}

int cvd_name_valid(const char *name)
{
    size_t i, len = strlen(name);

    if (len == 0 || len > CVD_NAME_MAX)
        return 0;
    for (i = 0; i < len; i++) {
        char c = name[i];
        int alnum = (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') ||
                    (c >= '0' && c <= '9');
        if (!alnum && (i == 0 || (c != '.' && c != '_' && c != '-')))
            return 0;
    }
    return 1;
}

void cvd_secret_rec_free(struct cvd_secret_rec *s)
{
    free(s->sealed);
    s->sealed = NULL;
    s->sealed_len = 0;
}

void cvd_meta_set_seal_key(struct cvd_meta *m, unsigned char *key)
{
    unsigned char *old = m->seal_key;

    m->seal_key = key;
    if (old != key)
        cvd_nodekey_free(old);
}

/* A store on etcd opens without the cluster's seal key: until this node
 * has it, no secret value can be sealed or read. */
static int no_seal_key(const char *name)
{
    return cv_error(-EAGAIN, "secret %s: this node has not received the "
                    "cluster's seal key yet", name);
}

int cvd_meta_seal(struct cvd_meta *m, const char *name, const void *value,
                  size_t len, const char *owner, struct cvd_secret_rec *s)
{
    memset(s, 0, sizeof *s);
    if (!m->seal_key)
        return no_seal_key(name);
    if (!cvd_name_valid(name))
        return cv_error(-EINVAL, "secret \"%s\": not a valid name", name);
    snprintf(s->name, sizeof s->name, "%s", name);
    snprintf(s->owner, sizeof s->owner, "%s", owner ? owner : "");
    s->created = (int64_t)time(NULL);
    return cv_seal(m->seal_key, name, value, len, &s->sealed, &s->sealed_len);
}

int cvd_meta_secret_add(struct cvd_meta *m, const char *name,
                        const void *value, size_t len, const char *owner)
{
    struct cvd_secret_rec s;
    int r;

    r = cvd_meta_seal(m, name, value, len, owner, &s);
    if (r == 0)
        r = m->ops->secret_add(m, &s);
    cvd_secret_rec_free(&s);
    return r;
}

int cvd_meta_secret_value(struct cvd_meta *m, const char *name,
                          struct cv_secret *out)
{
    struct cvd_secret_rec s;
    int r;

    memset(out, 0, sizeof *out);
    if (!m->seal_key)
        return no_seal_key(name);
    r = m->ops->secret_get(m, name, &s);
    if (r < 0)
        return r;
    r = cv_unseal(m->seal_key, name, s.sealed, s.sealed_len, out);
    cvd_secret_rec_free(&s);
    return r;
}

void cvd_kek_rec_free(struct cvd_kek_rec *k)
{
    free(k->sealed);
    k->sealed = NULL;
    k->sealed_len = 0;
}

static const char *const replica_state[] = {
    [CVD_REPLICA_INSYNC] = "InSync", [CVD_REPLICA_OUTOFSYNC] = "OutOfSync",
    [CVD_REPLICA_REBUILDING] = "Rebuilding", [CVD_REPLICA_FAILED] = "Failed",
};

const char *cvd_replica_state_name(enum cvd_replica_state s)
{
    if ((unsigned)s >= sizeof replica_state / sizeof replica_state[0])
        return "Failed";
    return replica_state[s];
}

int cvd_replica_state_parse(const char *s, enum cvd_replica_state *out)
{
    unsigned i;

    for (i = 0; i < sizeof replica_state / sizeof replica_state[0]; i++)
        if (!strcmp(s, replica_state[i])) {
            *out = (enum cvd_replica_state)i;
            return 0;
        }
    return cv_error(-EINVAL, "replica state \"%.40s\": not one of InSync, "
                    "OutOfSync, Rebuilding, Failed", s);
}
