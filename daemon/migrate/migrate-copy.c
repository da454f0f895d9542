/* Every record of a single node's meta.db into the etcd store of the
 * cluster it founded (migrate-internal.h). */
#include "migrate-internal.h"
#include "core/error.h"
#include "daemon.h"
#include "log.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* "volumes 3/10" on a terminal, one line rewritten. */
static void progress(const struct migration *mg, const char *what,
                     size_t done, size_t total)
{
    if (!mg->tty)
        return;
    fprintf(stderr, "\rmigrating %s: %zu/%zu%s", what, done, total,
            done == total ? "\n" : "");
    fflush(stderr);
}

/* Sealed for this node as they are: the node key or TPM that sealed them
 * opens them in the cluster too. */
static int copy_keks(struct migration *mg)
{
    struct cvd_kek_rec k;
    size_t i;
    int r = 0;

    for (i = 0; r == 0 && i < mg->ngens; i++) {
        r = mg->src->ops->kek_get(mg->src, mg->gens[i], mg->d->cfg.node_name,
                                  &k);
        if (r == 0)
            r = mg->dst->ops->kek_put(mg->dst, &k);
        cvd_kek_rec_free(&k);
        if (r < 0)
            return cv_error_prefix(r, "KEK generation %u", mg->gens[i]);
        progress(mg, "KEK generations", i + 1, mg->ngens);
    }
    return r;
}

static int copy_access(struct migration *mg, enum cvd_access_target t,
                       const char *name)
{
    struct cvd_access_rec *e = NULL;
    size_t n = 0;
    int r = mg->src->ops->access_list(mg->src, t, name, &e, &n);

    if (r == 0 && n)
        r = mg->dst->ops->access_edit(mg->dst, t, name, 1, e, n, NULL, 0);
    free(e);
    if (r < 0)
        return cv_error_prefix(r, "the access list of %s %s",
                               t == CVD_ACCESS_VOLUME ? "volume" : "class",
                               name);
    return 0;
}

static int copy_classes(struct migration *mg)
{
    struct cvd_class_rec *c = NULL;
    size_t n = 0, i;
    int r = mg->src->ops->class_list(mg->src, &c, &n);

    for (i = 0; r == 0 && i < n; i++) {
        c[i].rev = 0;
        r = mg->dst->ops->class_add(mg->dst, &c[i]);
        if (r == 0)
            r = copy_access(mg, CVD_ACCESS_CLASS, c[i].name);
        if (r < 0)
            r = cv_error_prefix(r, "class %s", c[i].name);
        progress(mg, "classes", i + 1, n);
    }
    mg->nclasses = r == 0 ? n : i;
    free(c);
    return r;
}

/* Unsealed with the node key (src's seal key), sealed again with the
 * cluster's (dst's), the value only ever in locked memory. */
static int copy_secret(struct migration *mg, const struct cvd_secret_rec *s)
{
    struct cv_secret v = { 0 };
    struct cvd_secret_rec out = { 0 };
    int r = cvd_meta_secret_value(mg->src, s->name, &v);

    if (r == 0)
        r = cvd_meta_seal(mg->dst, s->name, v.data, v.len, s->owner, &out);
    cv_secret_free(&v);
    out.created = s->created;
    if (r == 0)
        r = mg->dst->ops->secret_add(mg->dst, &out);
    cvd_secret_rec_free(&out);
    return r < 0 ? cv_error_prefix(r, "secret %s", s->name) : 0;
}

static int copy_secrets(struct migration *mg)
{
    struct cvd_secret_rec *s = NULL;
    size_t n = 0, i;
    int r = mg->src->ops->secret_list(mg->src, &s, &n);

    for (i = 0; r == 0 && i < n; i++) {
        r = copy_secret(mg, &s[i]);
        progress(mg, "secrets", i + 1, n);
    }
    mg->nsecrets = r == 0 ? n : i;
    for (i = 0; i < n; i++)
        cvd_secret_rec_free(&s[i]);
    free(s);
    return r;
}

/* Placed on this node: its layers are in this data directory. */
static int copy_volumes(struct migration *mg)
{
    struct cvd_volume_rec *v = NULL;
    size_t n = 0, i;
    int r = mg->src->ops->volume_list(mg->src, &v, &n);

    for (i = 0; r == 0 && i < n; i++) {
        snprintf(v[i].node, sizeof v[i].node, "%s", mg->d->cfg.node_name);
        v[i].rev = 0;
        r = mg->dst->ops->volume_add(mg->dst, &v[i], NULL);
        if (r == 0)
            r = copy_access(mg, CVD_ACCESS_VOLUME, v[i].name);
        if (r < 0)
            r = cv_error_prefix(r, "volume %s", v[i].name);
        progress(mg, "volumes", i + 1, n);
    }
    mg->nvolumes = r == 0 ? n : i;
    free(v);
    return r;
}

int migrate_copy(struct migration *mg)
{
    int r = copy_keks(mg);

    if (r == 0)
        r = copy_classes(mg);
    if (r == 0)
        r = copy_secrets(mg);
    if (r == 0)
        r = copy_volumes(mg);
    return r;
}
