/* The parser of the command table (args.h): global options before or
 * after the command, "--opt VALUE" and "--opt=VALUE", "--" before
 * arguments that start with '-', and usage errors that name the real
 * problem: the unknown option (with the one meant), the argument too
 * many, the part missing. */
#include "args.h"
#include "cli.h"
#include "core/error.h"
#include "core/size.h"

#include <ctype.h>
#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static const struct cli_opt help_opt = {
    "help", CLI_FLAG, 0, NULL, "show this help and exit" };

int cli_distance(const char *a, const char *b)
{
    size_t la = strlen(a), lb = strlen(b), i, j;
    int row[64], prev, cur;

    if (la > 60 || lb > 60)
        return 9;
    for (j = 0; j <= lb; j++)
        row[j] = (int)j;
    for (i = 1; i <= la; i++) {
        prev = row[0];
        row[0] = (int)i;
        for (j = 1; j <= lb; j++) {
            cur = row[j];
            row[j] = prev + (a[i - 1] != b[j - 1]);
            if (row[j - 1] + 1 < row[j])
                row[j] = row[j - 1] + 1;
            if (cur + 1 < row[j])
                row[j] = cur + 1;
            prev = cur;
        }
    }
    return row[lb] > 9 ? 9 : row[lb];
}

static void vusage(const char *words, const char *fmt, va_list ap)
{
    char msg[1024];

    vsnprintf(msg, sizeof msg, fmt, ap);
    cli_print_error(words, "UsageError", msg);
}

static int usage_at(const char *words, const char *fmt, ...)
    __attribute__((format(printf, 2, 3)));
static int usage_at(const char *words, const char *fmt, ...)
{
    va_list ap;

    va_start(ap, fmt);
    vusage(words, fmt, ap);
    va_end(ap);
    return EXIT_USAGE;
}

int cli_usage_error(const struct cli_args *a, const char *fmt, ...)
{
    va_list ap;

    va_start(ap, fmt);
    vusage(a->cmd ? a->cmd->words : "", fmt, ap);
    va_end(ap);
    return EXIT_USAGE;
}

/* --- Options ------------------------------------------------------------ */

static const struct cli_opt *in_list(const struct cli_opt *l, const char *name,
                                     size_t len)
{
    for (; l && l->name; l++)
        if (strlen(l->name) == len && !strncmp(l->name, name, len))
            return l;
    return NULL;
}

/* The option called name (len bytes) that c takes, or NULL. */
static const struct cli_opt *find_opt(const struct cli_cmd *c,
                                      const char *name, size_t len)
{
    const struct cli_opt *o = in_list(c->opts, name, len);

    if (!o && (c->sets & CLI_SET_ADMIN))
        o = in_list(cli_admin_opts, name, len);
    if (!o && (c->sets & CLI_SET_PBKDF))
        o = in_list(cli_pbkdf_opts, name, len);
    if (!o && len == 4 && !strncmp(name, "help", 4))
        o = &help_opt;
    return o;
}

static void closest_in(const struct cli_opt *l, const char *name,
                       const char **best, int *d)
{
    for (; l && l->name; l++) {
        int e = cli_distance(name, l->name);
        if (e < *d) {
            *d = e;
            *best = l->name;
        }
    }
}

/* Which other commands of c's group take the option name: "image export"
 * (up to two, "a or b"), in buf; "" if none. */
static size_t taken_by(const struct cli_cmd *c, const char *name, char *buf,
                       size_t len)
{
    size_t g = strcspn(c->words, " "), i, at = 0, n = 0;

    buf[0] = '\0';
    for (i = 0; i < cli_ncommands && n < 2; i++) {
        const struct cli_cmd *o = &cli_commands[i];
        if (o == c || strncmp(o->words, c->words, g) || o->words[g] != ' ' ||
            !in_list(o->opts, name, strlen(name)))
            continue;
        at += (size_t)snprintf(buf + at, len - at, "%s%s", n ? " and " : "",
                               o->words);
        n++;
    }
    return n;
}

/* --- Arguments ---------------------------------------------------------- */

/* How many words c->args has (an optional one is in brackets: "[NAME]");
 * count_required: those without brackets, which come first; arg_name: the
 * i-th of them into buf. */
static size_t count_args(const struct cli_cmd *c)
{
    size_t n = 0;
    const char *p;

    for (p = c->args; *p; p += strcspn(p, " "), p += strspn(p, " "))
        n++;
    return n;
}

static size_t count_required(const struct cli_cmd *c)
{
    size_t n = 0;
    const char *p;

    for (p = c->args; *p && *p != '['; p += strcspn(p, " "),
         p += strspn(p, " "))
        n++;
    return n;
}

static void arg_name(const struct cli_cmd *c, size_t i, char *buf, size_t len)
{
    const char *p = c->args;

    while (i--) {
        p += strcspn(p, " ");
        p += strspn(p, " ");
    }
    snprintf(buf, len, "%.*s", (int)strcspn(p, " "), p);
}

static int is_name_arg(const struct cli_cmd *c)
{
    return c->arg_kind != CLI_ARG_FILE;
}

/* "unknown option --sise (did you mean --size?)", or that the command
 * takes no such option while another of its group does, or for a word
 * meant as an argument that starts with '-', what to do. */
static int unknown_option(const struct cli_args *a, const char *word,
                          size_t len)
{
    const struct cli_cmd *c = a->cmd;
    const char *best = NULL;
    char name[64], others[160];
    int d = 3;

    snprintf(name, sizeof name, "%.*s", (int)(len < 60 ? len : 60),
             word + (word[1] == '-' ? 2 : 1));
    if (word[1] == '-') {
        size_t n = taken_by(c, name, others, sizeof others);
        if (n)
            return cli_usage_error(a, "takes no --%s (%s do%s)", name, others,
                                   n == 1 ? "es" : "");
        closest_in(c->opts, name, &best, &d);
        if (c->sets & CLI_SET_ADMIN)
            closest_in(cli_admin_opts, name, &best, &d);
        if (c->sets & CLI_SET_PBKDF)
            closest_in(cli_pbkdf_opts, name, &best, &d);
        if (best)
            return cli_usage_error(a, "unknown option --%s (did you mean "
                                   "--%s?)", name, best);
    }
    if (word[1] != '-' && a->nargs < count_args(c) && is_name_arg(c))
        return cli_usage_error(a, "unknown option %.64s (a NAME cannot start "
                               "with '-')", word);
    if (word[1] != '-' && c->args[0])
        return cli_usage_error(a, "unknown option %.64s (an argument that "
                               "starts with '-' goes after \"--\", or write "
                               "./%.64s for a file)", word, word);
    return cli_usage_error(a, "unknown option %.64s (see cryptvol %s --help)",
                           word, c->words);
}

/* "NAME and --size SIZE": the whole requirement of c, for errors. */
static void needs(const struct cli_cmd *c, char *buf, size_t len)
{
    const struct cli_opt *o;
    size_t at = 0, parts = 0, total = c->args[0] ? 1 : 0, k = 0;

    for (o = c->opts; o && o->name; o++)
        total += (o->flags & CLI_REQUIRED) ? 1 : 0;
    buf[0] = '\0';
    if (c->args[0]) {
        at += (size_t)snprintf(buf, len, "%s", c->args);
        parts++;
    }
    for (o = c->opts; o && o->name && at < len; o++) {
        if (!(o->flags & CLI_REQUIRED))
            continue;
        k = ++parts;
        at += (size_t)snprintf(buf + at, len - at, "%s--%s %s",
                               k == 1 ? "" : k == total ? " and " : ", ",
                               o->name, o->meta);
    }
}

static int given_count(const struct cli_args *a, const struct cli_opt *o)
{
    size_t i;
    int n = 0;

    for (i = 0; i < a->ngiven; i++)
        n += a->given[i].opt == o;
    return n;
}

/* What is missing, named: "needs NAME and --size SIZE (--size is
 * missing)". */
static int check_complete(const struct cli_args *a)
{
    const struct cli_cmd *c = a->cmd;
    const struct cli_opt *o;
    char want[256], what[96] = "";
    size_t nargs = count_required(c);

    needs(c, want, sizeof want);
    if (a->nargs < nargs) {
        arg_name(c, a->nargs, what, sizeof what);
        return cli_usage_error(a, "needs %s (%s is missing)", want, what);
    }
    for (o = c->opts; o && o->name; o++)
        if ((o->flags & CLI_REQUIRED) && !given_count(a, o))
            return cli_usage_error(a, "needs %s (--%s is missing)", want,
                                   o->name);
    return 0;
}

/* At most one thing reads standard input. */
static int check_stdin(const struct cli_args *a)
{
    char first[64] = "", arg[32];
    size_t i;

    if (a->cmd->stdin_arg && a->nargs >= (size_t)a->cmd->stdin_arg &&
        !strcmp(a->arg[a->cmd->stdin_arg - 1], "-")) {
        arg_name(a->cmd, (size_t)a->cmd->stdin_arg - 1, arg, sizeof arg);
        snprintf(first, sizeof first, "%s", arg);
    }
    for (i = 0; i < a->ngiven; i++) {
        if (!(a->given[i].opt->flags & CLI_STDIN) ||
            strcmp(a->given[i].val, "-"))
            continue;
        if (first[0])
            return cli_usage_error(a, "%s and --%s both read standard "
                                   "input (\"-\"); give one of them a file",
                                   first, a->given[i].opt->name);
        snprintf(first, sizeof first, "--%s", a->given[i].opt->name);
    }
    return 0;
}

/* --- The parse ---------------------------------------------------------- */

struct parse {
    int argc;
    char **argv;
    int i;                      /* the next word */
    int help;
    struct cli_given pre[8];    /* global options before the command */
    size_t npre;
};

/* --name[=value] at p->argv[p->i] for option o: its value into *val. */
static int take_value(struct parse *p, struct cli_args *a,
                      const struct cli_opt *o, const char *eq,
                      const char **val)
{
    const char *next;

    *val = NULL;
    if (o->kind == CLI_FLAG) {
        if (eq)
            return cli_usage_error(a, "option --%s takes no value", o->name);
        return 0;
    }
    if (eq) {
        *val = eq + 1;
        return 0;
    }
    if (o->kind == CLI_WORDS)
        return 0;
    next = p->i + 1 < p->argc ? p->argv[p->i + 1] : NULL;
    if (!next || (next[0] == '-' && next[1] == '-' &&
                  (!next[2] || find_opt(a->cmd, next + 2,
                                        strcspn(next + 2, "=")))))
        return cli_usage_error(a, "option --%s needs a value (%s)%s%s",
                               o->name, o->meta, next ? ", not " : "",
                               next ? next : "");
    *val = next;
    p->i++;
    return 0;
}

static void add_given(struct cli_args *a, const struct cli_opt *o,
                      const char *val)
{
    a->given[a->ngiven].opt = o;
    a->given[a->ngiven].val = val;
    a->ngiven++;
}

/* One option word of the command: 0, or the exit status of an error. */
static int command_option(struct parse *p, struct cli_args *a,
                          const struct cli_opt **words)
{
    const char *w = p->argv[p->i], *eq;
    const struct cli_opt *o;
    const char *val;
    size_t len;
    int r;

    if (w[1] != '-')
        return unknown_option(a, w, strlen(w));
    eq = strchr(w, '=');
    len = eq ? (size_t)(eq - w - 2) : strlen(w + 2);
    o = find_opt(a->cmd, w + 2, len);
    if (!o)
        return unknown_option(a, w, eq ? (size_t)(eq - w) : strlen(w));
    r = take_value(p, a, o, eq, &val);
    if (r)
        return r;
    if (o->kind == CLI_VALUE && given_count(a, o))
        return cli_usage_error(a, "option --%s given twice", o->name);
    *words = o->kind == CLI_WORDS ? o : NULL;
    /* A list option without "=" is recorded with no value: the mark that
     * the list was started (check_lists wants words after it). */
    add_given(a, o, val);
    return 0;
}

/* The words after the command. */
static int parse_command(struct parse *p, struct cli_args *a)
{
    const struct cli_opt *words = NULL;
    size_t nargs = count_args(a->cmd);
    int dashdash = 0, r;

    if (nargs > CLI_MAX_ARGS) {
        fprintf(stderr, "cryptvol %s: internal error: more arguments in the "
                "command table than CLI_MAX_ARGS\n", a->cmd->words);
        abort();
    }
    for (; p->i < p->argc; p->i++) {
        const char *w = p->argv[p->i];

        if (!dashdash && !strcmp(w, "--")) {
            dashdash = 1;
            words = NULL;
        } else if (!dashdash && w[0] == '-' && w[1]) {
            r = command_option(p, a, &words);
            if (r)
                return r;
        } else if (words) {
            add_given(a, words, w);
        } else if (a->nargs < nargs) {
            a->arg[a->nargs++] = w;
        } else {
            return cli_usage_error(a, "unexpected argument \"%.64s\" (it "
                                   "takes %s%s)", w, a->cmd->args[0] ?
                                   a->cmd->args : "no arguments",
                                   a->cmd->args[0] ? " only" : "");
        }
    }
    return 0;
}

/* A list option with no words after it: "--allow needs at least one
 * IDENTITY". */
static int check_lists(const struct cli_args *a)
{
    size_t i, j;

    for (i = 0; i < a->ngiven; i++) {
        const struct cli_opt *o = a->given[i].opt;
        int any = 0;
        if (o->kind != CLI_WORDS || a->given[i].val)
            continue;
        for (j = i + 1; j < a->ngiven && a->given[j].opt == o &&
                        a->given[j].val; j++)
            any = 1;
        if (!any) {
            char meta[32];
            for (j = 0; o->meta[j] && j < sizeof meta - 1; j++)
                meta[j] = (char)tolower((unsigned char)o->meta[j]);
            meta[j] = '\0';
            return cli_usage_error(a, "option --%s needs at least one %s "
                                   "after it", o->name, meta);
        }
    }
    return 0;
}

/* The global options given before the command: the command must take
 * them (an image command does not talk to the daemon). */
static int merge_pre(struct parse *p, struct cli_args *a)
{
    size_t i;

    for (i = 0; i < p->npre; i++) {
        const struct cli_opt *o = p->pre[i].opt;
        const struct cli_opt *own = find_opt(a->cmd, o->name,
                                             strlen(o->name));
        if (!own)
            return cli_usage_error(a, "takes no --%s (it works on local "
                                   "files; only commands that talk to "
                                   "cryptvold do)", o->name);
        if (own->kind == CLI_VALUE && given_count(a, own))
            return cli_usage_error(a, "option --%s given twice", o->name);
        add_given(a, own, p->pre[i].val);
    }
    return 0;
}

static int is_admin_opt(const struct cli_opt *o)
{
    for (const struct cli_opt *q = cli_admin_opts; q->name; q++)
        if (q == o)
            return 1;
    return 0;
}

static void fill_admin(struct cli_args *a)
{
    size_t i;

    a->admin.cmd = a->cmd->words;
    for (i = 0; i < a->ngiven; i++) {
        const struct cli_given *g = &a->given[i];
        /* A command's own option of the same name (device map's
         * --tls-dir, for its NBD connection) is not the daemon's. */
        if (!is_admin_opt(g->opt))
            continue;
        if (!strcmp(g->opt->name, "socket"))
            a->admin.socket = g->val;
        else if (!strcmp(g->opt->name, "url"))
            a->admin.url = g->val;
        else if (!strcmp(g->opt->name, "tls-dir"))
            a->admin.tls_dir = g->val;
        else if (!strcmp(g->opt->name, "json"))
            a->admin.json = 1;
    }
}

static int check_admin(const struct cli_args *a)
{
    if (a->admin.socket && a->admin.url)
        return cli_usage_error(a, "--socket (the unix socket) or --url "
                               "(HTTPS), not both");
    if (a->admin.tls_dir && !a->admin.url)
        return cli_usage_error(a, "--tls-dir goes with --url (the unix "
                               "socket needs no certificates)");
    return 0;
}

/* After the command's words: its options and arguments, checked. */
static int finish_command(struct parse *p, struct cli_args *a)
{
    int r;

    a->given = calloc((size_t)p->argc + 8, sizeof *a->given);
    if (!a->given)
        return fprintf(stderr, "cryptvol: out of memory\n"), EXIT_ERROR;
    r = parse_command(p, a);
    if (r == 0)
        r = merge_pre(p, a);
    if (r == 0 && (p->help || cli_flag(a, "help"))) {
        cli_help_command(stdout, a->cmd);
        return EXIT_OK;
    }
    if (r == 0)
        r = check_lists(a);
    if (r == 0)
        r = check_complete(a);
    if (r == 0)
        r = check_stdin(a);
    if (r == 0) {
        fill_admin(a);
        r = check_admin(a);
    }
    return r ? r : -1;
}

/* A global option before the command: --socket S, --json, --help. */
static int global_option(struct parse *p, struct cli_args *a,
                         const char *words)
{
    const char *w = p->argv[p->i], *eq = strchr(w, '='), *val;
    size_t len = eq ? (size_t)(eq - w - 2) : strlen(w + 2);
    const struct cli_opt *o;
    struct cli_cmd any = { .words = words, .args = "", .sets = CLI_SET_ADMIN };
    int r;

    if (!strcmp(w, "-h") || !strcmp(w, "--help")) {
        p->help = 1;
        p->i++;
        return 0;
    }
    o = w[1] == '-' ? in_list(cli_admin_opts, w + 2, len) : NULL;
    if (!o)
        return usage_at(words, "unknown option %.64s before the command (an "
                        "option of a command goes after it: cryptvol%s%s "
                        "--help)", w, words[0] ? " " : " COMMAND", words);
    a->cmd = &any;
    r = take_value(p, a, o, eq, &val);
    a->cmd = NULL;
    if (r)
        return r;
    if (p->npre == sizeof p->pre / sizeof p->pre[0])
        return usage_at(words, "too many options before the command");
    p->pre[p->npre].opt = o;
    p->pre[p->npre++].val = val;
    p->i++;
    return 0;
}

/* "volume craete": the word of the group meant, into best (32 bytes), if
 * one is close; else "". */
static void closest_word(const char *group, const char *word, char *best)
{
    size_t g = strlen(group), i;
    int d = 3;

    best[0] = '\0';
    for (i = 0; i < cli_ncommands; i++) {
        const char *w = cli_commands[i].words;
        char cand[32];
        if (g && (strncmp(w, group, g) || w[g] != ' '))
            continue;
        w += g ? g + 1 : 0;
        snprintf(cand, sizeof cand, "%.*s", (int)strcspn(w, " "), w);
        if (cli_distance(word, cand) < d) {
            d = cli_distance(word, cand);
            snprintf(best, 32, "%s", cand);
        }
    }
}

static int unknown_command(const char *group, const char *word)
{
    char list[256], meant[32];

    closest_word(group, word, meant);
    if (!group[0])
        return usage_at("", "unknown command \"%.64s\"%s%s%s (see cryptvol "
                        "help)", word, meant[0] ? " (did you mean " : "",
                        meant, meant[0] ? "?)" : "");
    cli_group_words(group, list, sizeof list);
    if (meant[0])
        return usage_at("", "unknown command \"%s %.64s\" (did you mean "
                        "\"%s %s\"? %s commands: %s)", group, word, group,
                        meant, group, list);
    return usage_at("", "unknown command \"%s %.64s\" (%s commands: %s)",
                    group, word, group, list);
}

/* The words that name the command: global options may come between them.
 * Sets a->cmd, or returns what main returns. */
static int parse_words(struct parse *p, struct cli_args *a)
{
    char words[64] = "", cand[112], list[256];
    int r;

    while (p->i < p->argc) {
        const char *w = p->argv[p->i];
        if (w[0] == '-' && w[1]) {
            r = global_option(p, a, words);
            if (r)
                return r;
            continue;
        }
        snprintf(cand, sizeof cand, "%s%s%.40s", words, words[0] ? " " : "",
                 w);
        p->i++;
        if ((a->cmd = cli_find(cand)))
            return -1;
        if (!cli_is_group(cand))
            return unknown_command(words, w);
        snprintf(words, sizeof words, "%.60s", cand);
    }
    if (p->help && !words[0])
        return cli_help_top(stdout), EXIT_OK;
    if (p->help)
        return cli_help_group(stdout, words), EXIT_OK;
    if (!words[0])
        return cli_help_top(stderr), EXIT_USAGE;
    cli_group_words(words, list, sizeof list);
    return usage_at("", "\"%s\" needs a command: %s (see cryptvol %s "
                    "--help)", words, list, words);
}

/* cryptvol help [--json] [COMMAND...] */
static int help_command(int argc, char **argv)
{
    struct parse p = { .argc = argc, .argv = argv, .i = 2, .help = 1 };
    struct cli_args a = { 0 };
    int r;

    if (argc == 3 && !strcmp(argv[2], "--json"))
        return cli_help_json();
    r = parse_words(&p, &a);
    if (r >= 0)
        return r;
    cli_help_command(stdout, a.cmd);
    return EXIT_OK;
}

/* Whether --json is among the words before "--": looked for before the
 * command line is parsed, so that its own usage errors are JSON too. */
static int wants_json(int argc, char **argv)
{
    int i;

    for (i = 1; i < argc && strcmp(argv[i], "--"); i++)
        if (!strcmp(argv[i], "--json"))
            return 1;
    return 0;
}

int cli_parse(int argc, char **argv, struct cli_args *a)
{
    struct parse p = { .argc = argc, .argv = argv, .i = 1 };
    int r;

    memset(a, 0, sizeof *a);
    cli_json_errors(wants_json(argc, argv));
    if (argc >= 2 && !strcmp(argv[1], "help"))
        return help_command(argc, argv);
    if (argc >= 2 && !strcmp(argv[1], "__complete"))
        return cli_complete(argc - 2, argv + 2);
    if (argc == 2 && (!strcmp(argv[1], "--version") ||
                      !strcmp(argv[1], "version")))
        return puts("cryptvol " CRYPTVOL_VERSION), EXIT_OK;
    r = parse_words(&p, a);
    if (r >= 0)
        return r;
    return finish_command(&p, a);
}

void cli_args_free(struct cli_args *a)
{
    free(a->given);
    a->given = NULL;
}

/* --- What the command was given ----------------------------------------- */

static const struct cli_opt *opt_of(const struct cli_args *a, const char *name)
{
    const struct cli_opt *o = find_opt(a->cmd, name, strlen(name));

    if (!o) {
        fprintf(stderr, "cryptvol %s: internal error: it has no option "
                "--%s in the command table\n", a->cmd->words, name);
        abort();
    }
    return o;
}

const char *cli_value(const struct cli_args *a, const char *name)
{
    const struct cli_opt *o = opt_of(a, name);
    const char *v = NULL;
    size_t i;

    for (i = 0; i < a->ngiven; i++)
        if (a->given[i].opt == o)
            v = a->given[i].val;
    return v;
}

int cli_flag(const struct cli_args *a, const char *name)
{
    return given_count(a, opt_of(a, name)) > 0;
}

const char *cli_next_value(const struct cli_args *a, const char *name,
                           size_t *pos)
{
    const struct cli_opt *o = opt_of(a, name);

    for (; *pos < a->ngiven; (*pos)++)
        if (a->given[*pos].opt == o && a->given[*pos].val)
            return a->given[(*pos)++].val;
    return NULL;
}

int cli_size_value(const struct cli_args *a, const char *name, uint64_t min,
                   uint64_t max, uint64_t *out)
{
    const char *v = cli_value(a, name);
    char lo[32], hi[32], range[80];
    int r;

    cv_format_size(min, lo, sizeof lo);
    cv_format_size(max, hi, sizeof hi);
    snprintf(range, sizeof range, "allowed: %s to %s", lo, hi);
    r = cv_parse_size(v, out);
    if (r < 0)
        return cli_usage_error(a, "--%s: %s (%s)", name, cv_last_error(),
                               range);
    if (*out < min || *out > max)
        return cli_usage_error(a, "--%s: size \"%s\" is out of range (%s)",
                               name, v, range);
    return 0;
}

int cli_u32_value(const struct cli_args *a, const char *name, uint32_t *out)
{
    const char *v = cli_value(a, name);
    char *end;
    unsigned long n;

    errno = 0;
    n = strtoul(v, &end, 10);
    if (errno || *end || end == v || n > UINT32_MAX || v[0] == '-')
        return cli_usage_error(a, "--%s: \"%s\" is not a number", name, v);
    *out = (uint32_t)n;
    return 0;
}
