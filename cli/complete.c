/* cryptvol __complete WORD... : what may come in place of the last word
 * (maybe ""), one candidate a line, for a shell's completion function:
 * the next command word, an option of the command, an option's choices
 * ("luks2|luks1"), and the names of volumes, secrets and classes from the
 * daemon when it answers.  No line means "complete a file name".  Hidden:
 * the interface is this comment and docs/cli.md. */
#include "args.h"
#include "cli.h"
#include "client.h"

#include <stdio.h>
#include <string.h>

struct where {
    char group[128];
    const struct cli_cmd *cmd;
    const struct cli_opt *want;     /* the option the last word is the value of */
    size_t nargs;                   /* arguments given so far */
    const char *arg0;               /* the first of them */
    struct cli_admin admin;
};

static const struct cli_opt *option_of(const struct cli_cmd *c,
                                       const char *w)
{
    const struct cli_opt *lists[3] = { c ? c->opts : NULL, cli_admin_opts,
                                       c ? cli_pbkdf_opts : NULL };
    size_t len = strcspn(w + 2, "="), i;

    if (w[0] != '-' || w[1] != '-')
        return NULL;
    for (i = 0; i < 3; i++)
        for (const struct cli_opt *o = lists[i]; o && o->name; o++)
            if (strlen(o->name) == len && !strncmp(o->name, w + 2, len))
                return o;
    return NULL;
}

/* Follows the words before the last as the parser would. */
static void follow(int n, char **words, struct where *at)
{
    const struct cli_opt *list = NULL;
    int i;

    memset(at, 0, sizeof *at);
    for (i = 0; i < n; i++) {
        const char *w = words[i];
        const struct cli_opt *o = option_of(at->cmd, w);
        char cand[sizeof at->group];

        at->want = NULL;
        if (o) {
            list = o->kind == CLI_WORDS ? o : NULL;
            if (o->kind == CLI_FLAG || o->kind == CLI_WORDS || strchr(w, '='))
                continue;
            if (i + 1 == n) {
                at->want = o;
                continue;
            }
            if (!strcmp(o->name, "socket"))
                at->admin.socket = words[i + 1];
            else if (!strcmp(o->name, "url"))
                at->admin.url = words[i + 1];
            else if (!strcmp(o->name, "tls-dir"))
                at->admin.tls_dir = words[i + 1];
            i++;
        } else if (w[0] == '-') {
            continue;
        } else if (at->cmd && !list) {
            if (at->nargs++ == 0)
                at->arg0 = w;
        } else if (!at->cmd) {
            snprintf(cand, sizeof cand, "%.80s%s%.40s", at->group,
                     at->group[0] ? " " : "", w);
            at->cmd = cli_find(cand);
            snprintf(at->group, sizeof at->group, "%s", cand);
        }
    }
}

static void print_matching(const char *word, const char *partial)
{
    if (!strncmp(word, partial, strlen(partial)))
        printf("%s\n", word);
}

static void next_words(const char *group, const char *partial)
{
    char list[512], *w, *save = NULL;

    cli_group_words(group, list, sizeof list);
    for (w = strtok_r(list, ", ", &save); w; w = strtok_r(NULL, ", ", &save))
        print_matching(w, partial);
}

static void options(const struct cli_opt *l, const char *partial)
{
    char word[64];

    for (; l && l->name; l++) {
        snprintf(word, sizeof word, "--%s", l->name);
        print_matching(word, partial);
    }
}

/* The names the daemon has: GET /v1/volumes, /v1/secrets, /v1/classes.
 * Silent when it does not answer. */
/* "volume create NAME", "secret create NAME", "volume import NAME",
 * "snapshot create VOL@SNAP": the name is a new one, so the existing ones
 * are no completion for it. */
static int ends_with(const char *s, const char *tail)
{
    size_t n = strlen(s), t = strlen(tail);

    return n > t && !strcmp(s + n - t, tail);
}

/* "backup create VOL" backs up an existing volume: an argument written
 * VOL (not NAME) always names one. */
static int makes_name(const struct cli_cmd *c)
{
    return c->arg_kind != CLI_ARG_FILE && strncmp(c->args, "VOL ", 4) &&
           strcmp(c->args, "VOL") &&
           (ends_with(c->words, " create") || ends_with(c->words, " import"));
}

/* The snapshots of volume vol (GET /v1/volumes/VOL/snapshots), each as
 * prefix NAME; silent when the daemon does not answer. */
static void snapshots_of(struct where *at, const char *vol,
                         const char *prefix, const char *partial)
{
    json_object *out = NULL, *list = NULL;
    char path[256], word[160];
    size_t i, n;

    if (cli_admin_path(path, sizeof path, "volume", "/v1/volumes/", vol,
                       "/snapshots") < 0 ||
        cli_admin_call(&at->admin, "GET", path, NULL, 0, &out) < 0)
        return;
    json_object_object_get_ex(out, "snapshots", &list);
    n = json_object_is_type(list, json_type_array) ?
        json_object_array_length(list) : 0;
    for (i = 0; i < n; i++) {
        snprintf(word, sizeof word, "%s%s", prefix,
                 cli_str(json_object_array_get_idx(list, i), "name"));
        print_matching(word, partial);
    }
    json_object_put(out);
}

#define COMPLETE_MAX_VOLUMES 64

/* VOL@SNAP: with an @ typed, that volume's snapshots; before it, those of
 * every volume whose name starts so (up to COMPLETE_MAX_VOLUMES asked). */
static void snapshot_names(struct where *at, const char *partial)
{
    const char *sign = strchr(partial, '@');
    json_object *out = NULL;
    char vol[80], prefix[96];
    size_t i, n, asked = 0;

    if (sign) {
        snprintf(vol, sizeof vol, "%.*s", (int)(sign - partial), partial);
        snprintf(prefix, sizeof prefix, "%s@", vol);
        snapshots_of(at, vol, prefix, partial);
        return;
    }
    if (cli_admin_call(&at->admin, "GET", "/v1/volumes", NULL, 0, &out) < 0)
        return;
    n = json_object_is_type(out, json_type_array) ?
        json_object_array_length(out) : 0;
    for (i = 0; i < n && asked < COMPLETE_MAX_VOLUMES; i++) {
        const char *name = cli_str(json_object_array_get_idx(out, i), "name");
        if (strncmp(name, partial, strlen(partial)))
            continue;
        snprintf(prefix, sizeof prefix, "%s@", name);
        snapshots_of(at, name, prefix, partial);
        asked++;
    }
    json_object_put(out);
}

/* The ids of the target's backups (GET /v1/backups). */
static void backup_ids(struct where *at, const char *partial)
{
    json_object *out = NULL, *list = NULL;
    size_t i, n;

    if (cli_admin_call(&at->admin, "GET", "/v1/backups", NULL, 0, &out) < 0)
        return;
    json_object_object_get_ex(out, "backups", &list);
    n = json_object_is_type(list, json_type_array) ?
        json_object_array_length(list) : 0;
    for (i = 0; i < n; i++)
        print_matching(cli_str(json_object_array_get_idx(list, i), "id"),
                       partial);
    json_object_put(out);
}

static void names(struct where *at, enum cli_arg_kind kind,
                  const char *partial)
{
    static const char *const paths[] = { NULL, "/v1/volumes", "/v1/secrets",
                                         "/v1/classes" };
    json_object *out = NULL;
    size_t i, n;

    if (kind == CLI_ARG_SNAPSHOT)
        return snapshot_names(at, partial);
    if (kind == CLI_ARG_BACKUP)
        return backup_ids(at, partial);
    if (kind == CLI_ARG_FILE ||
        cli_admin_call(&at->admin, "GET", paths[kind], NULL, 0, &out) < 0)
        return;
    n = json_object_is_type(out, json_type_array) ?
        json_object_array_length(out) : 0;
    for (i = 0; i < n; i++)
        print_matching(cli_str(json_object_array_get_idx(out, i), "name"),
                       partial);
    json_object_put(out);
}

/* An option's value: its choices, or names from the daemon. */
static void values(struct where *at, const char *partial)
{
    char choices[128], *w, *save = NULL;

    if (!strcmp(at->want->name, "secret"))
        return names(at, CLI_ARG_SECRET, partial);
    if (!strcmp(at->want->name, "class"))
        return names(at, CLI_ARG_CLASS, partial);
    if (!strcmp(at->want->name, "snapshot") && at->arg0)
        return snapshots_of(at, at->arg0, "", partial);
    if (!strchr(at->want->meta, '|'))
        return;                 /* a file, a size: the shell's own */
    snprintf(choices, sizeof choices, "%s", at->want->meta);
    for (w = strtok_r(choices, "|", &save); w; w = strtok_r(NULL, "|", &save))
        print_matching(w, partial);
}

int cli_complete(int n, char **words)
{
    const char *partial = n ? words[n - 1] : "";
    struct where at;

    follow(n ? n - 1 : 0, words, &at);
    if (at.want)
        values(&at, partial);
    else if (!at.cmd && partial[0] == '-')
        options(cli_admin_opts, partial), print_matching("--help", partial);
    else if (!at.cmd)
        next_words(at.group, partial);
    else if (partial[0] == '-') {
        options(at.cmd->opts, partial);
        if (at.cmd->sets & CLI_SET_ADMIN)
            options(cli_admin_opts, partial);
        if (at.cmd->sets & CLI_SET_PBKDF)
            options(cli_pbkdf_opts, partial);
        print_matching("--help", partial);
    } else if (at.nargs == 0 && at.cmd->args[0] && !makes_name(at.cmd)) {
        names(&at, at.cmd->arg_kind, partial);
    }
    return EXIT_OK;
}
