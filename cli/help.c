/* What --help shows, from the command table (commands.c): the list of
 * every command, a group's commands, a command's page; and the table as
 * JSON (cryptvol help --json) for completion scripts and man pages. */
#include "args.h"
#include "cli.h"

#include <json-c/json.h>
#include <stdio.h>
#include <string.h>

#define WIDTH 79
#define HELP_COL 26

const struct cli_cmd *cli_find(const char *words)
{
    size_t i;

    for (i = 0; i < cli_ncommands; i++)
        if (!strcmp(cli_commands[i].words, words))
            return &cli_commands[i];
    return NULL;
}

static int in_group(const struct cli_cmd *c, const char *group)
{
    size_t g = strlen(group);

    return !g || (!strncmp(c->words, group, g) && c->words[g] == ' ');
}

int cli_is_group(const char *prefix)
{
    size_t i;

    for (i = 0; i < cli_ncommands; i++)
        if (in_group(&cli_commands[i], prefix))
            return 1;
    return 0;
}

void cli_group_words(const char *group, char *buf, size_t len)
{
    size_t g = strlen(group), i, at = 0;
    char last[32] = "";

    buf[0] = '\0';
    for (i = 0; i < cli_ncommands && at < len; i++) {
        const char *w = cli_commands[i].words;
        char word[32];
        if (!in_group(&cli_commands[i], group))
            continue;
        w += g ? g + 1 : 0;
        snprintf(word, sizeof word, "%.*s", (int)strcspn(w, " "), w);
        if (!strcmp(word, last))
            continue;           /* "key" of image key add, change, remove */
        snprintf(last, sizeof last, "%s", word);
        at += (size_t)snprintf(buf + at, len - at, "%s%s", at ? ", " : "",
                               word);
    }
}

static int has_optional(const struct cli_cmd *c)
{
    const struct cli_opt *o;

    for (o = c->opts; o->name; o++)
        if (!(o->flags & CLI_REQUIRED))
            return 1;
    return c->sets != 0;
}

/* "volume create NAME --size SIZE" (without "cryptvol "), and
 * " [OPTIONS]" when with_options and it has some. */
static void short_synopsis(const struct cli_cmd *c, int with_options,
                           char *buf, size_t len)
{
    const struct cli_opt *o;
    size_t at;

    at = (size_t)snprintf(buf, len, "%s%s%s", c->words, c->args[0] ? " " : "",
                          c->args);
    for (o = c->opts; o->name && at < len; o++)
        if (o->flags & CLI_REQUIRED)
            at += (size_t)snprintf(buf + at, len - at, " --%s %s", o->name,
                                   o->meta);
    if (at < len && with_options && has_optional(c))
        snprintf(buf + at, len - at, " [OPTIONS]");
}

void cli_synopsis(const struct cli_cmd *c, char *buf, size_t len)
{
    char s[200];

    short_synopsis(c, 1, s, sizeof s);
    snprintf(buf, len, "cryptvol %s", s);
}

/* text from column col (the cursor is at col already), wrapped at WIDTH
 * with following lines indented to col. */
static void wrap(FILE *f, const char *text, int col)
{
    int at = col;

    while (*text) {
        size_t w = strcspn(text, " ");
        if (at > col && at + 1 + (int)w > WIDTH) {
            fprintf(f, "\n%*s", col, "");
            at = col;
        } else if (at > col) {
            fputc(' ', f);
            at++;
        }
        fprintf(f, "%.*s", (int)w, text);
        at += (int)w;
        text += w;
        text += strspn(text, " ");
    }
    fputc('\n', f);
}

/* "  left    help", the help wrapped at HELP_COL (on the next line when
 * left is long). */
static void item(FILE *f, const char *left, const char *help)
{
    int n = fprintf(f, "  %s", left);

    if (n + 2 > HELP_COL)
        fprintf(f, "\n%*s", HELP_COL, "");
    else
        fprintf(f, "%*s", HELP_COL - n, "");
    wrap(f, help, HELP_COL);
}

static void print_opts(FILE *f, const struct cli_opt *l)
{
    char left[96];

    for (; l->name; l++) {
        snprintf(left, sizeof left, "--%s%s%s%s", l->name, l->meta ? " " : "",
                 l->meta ? l->meta : "",
                 l->kind == CLI_REPEAT || l->kind == CLI_WORDS ? "..." : "");
        item(f, left, l->help);
    }
}

/* Paragraphs ("\n\n" between them) wrapped from column 0. */
static void paragraphs(FILE *f, const char *text)
{
    char para[2048];

    while (*text) {
        const char *end = strstr(text, "\n\n");
        size_t n = end ? (size_t)(end - text) : strlen(text);
        snprintf(para, sizeof para, "%.*s", (int)n, text);
        wrap(f, para, 0);
        text += n;
        if (*text) {
            fputc('\n', f);
            text += 2;
        }
    }
}

static void globals(FILE *f, unsigned sets)
{
    if (sets & CLI_SET_ADMIN) {
        fprintf(f, "\nGlobal options (before or after the command):\n");
        print_opts(f, cli_admin_opts);
    } else {
        fprintf(f, "\nGlobal options:\n");
    }
    item(f, "-h, --help", "show this help and exit");
}

void cli_help_command(FILE *f, const struct cli_cmd *c)
{
    char syn[256];

    cli_synopsis(c, syn, sizeof syn);
    fprintf(f, "Usage: %s\n\n", syn);
    paragraphs(f, c->help);
    if (c->opts[0].name) {
        fprintf(f, "\nOptions:\n");
        print_opts(f, c->opts);
    }
    if (c->sets & CLI_SET_PBKDF) {
        fprintf(f, "\nKey derivation of the new keyslot:\n");
        print_opts(f, cli_pbkdf_opts);
    }
    globals(f, c->sets);
    fprintf(f, "\nExample:\n  cryptvol %s\n", c->example);
}

static void list_commands(FILE *f, const char *group, int admin)
{
    char syn[256];
    size_t i;

    for (i = 0; i < cli_ncommands; i++) {
        const struct cli_cmd *c = &cli_commands[i];
        if (!in_group(c, group) || !(c->sets & CLI_SET_ADMIN) != !admin)
            continue;
        short_synopsis(c, 0, syn, sizeof syn);
        item(f, syn, c->summary);
    }
}

static void footer(FILE *f)
{
    fprintf(f, "\nSizes: K, M, G, T, P, E (and KiB, MiB, ...) are powers of "
               "1024; KB, MB, GB, ...\npowers of 1000; 1.5G is fine.  "
               "Exit status: 0 ok, 1 error, 2 usage, 3 wrong\npassphrase.\n");
}

void cli_help_group(FILE *f, const char *group)
{
    unsigned sets = 0;
    size_t i;

    fprintf(f, "Usage: cryptvol %s COMMAND [ARGUMENTS] [OPTIONS]\n\n"
               "Commands:\n", group);
    list_commands(f, group, 0);
    list_commands(f, group, 1);
    for (i = 0; i < cli_ncommands; i++)
        if (in_group(&cli_commands[i], group))
            sets |= cli_commands[i].sets & CLI_SET_ADMIN;
    globals(f, sets);
    fprintf(f, "\n\"cryptvol %s COMMAND --help\" shows a command's options "
               "and an example.\n", group);
    footer(f);
}

void cli_help_top(FILE *f)
{
    fprintf(f, "Usage: cryptvol COMMAND [ARGUMENTS] [OPTIONS]\n\n"
               "Local LUKS images (no daemon):\n");
    list_commands(f, "", 0);
    fprintf(f, "\nThrough cryptvold:\n");
    list_commands(f, "", 1);
    globals(f, CLI_SET_ADMIN);
    fprintf(f, "\n\"cryptvol GROUP --help\" (image, image key, secret, "
               "class, volume, cluster, ...)\nlists a group's commands; "
               "\"cryptvol COMMAND --help\" shows a command's options and\n"
               "an example; \"cryptvol help --json\" prints this table as "
               "JSON.\n");
    footer(f);
}

/* --- cryptvol help --json ------------------------------------------------ */

static json_object *opts_json(const struct cli_opt *l)
{
    static const char *const kinds[] = { "flag", "value", "repeat", "words" };
    json_object *a = json_object_new_array();

    for (; l->name; l++) {
        json_object *o = json_object_new_object();
        json_object_object_add(o, "name", json_object_new_string(l->name));
        json_object_object_add(o, "kind", json_object_new_string(kinds[l->kind]));
        json_object_object_add(o, "value", l->meta ?
                               json_object_new_string(l->meta) : NULL);
        json_object_object_add(o, "required", json_object_new_boolean(
                                   (l->flags & CLI_REQUIRED) != 0));
        json_object_object_add(o, "stdin", json_object_new_boolean(
                                   (l->flags & CLI_STDIN) != 0));
        json_object_object_add(o, "help", json_object_new_string(l->help));
        json_object_array_add(a, o);
    }
    return a;
}

static json_object *command_json(const struct cli_cmd *c)
{
    static const char *const kinds[] = { "file", "volume", "secret", "class",
                                         "snapshot", "backup" };
    json_object *o = json_object_new_object(), *args = json_object_new_array();
    json_object *sets = json_object_new_array();
    char syn[256], word[32];
    const char *p;

    for (p = c->args; *p; p += strcspn(p, " "), p += strspn(p, " ")) {
        snprintf(word, sizeof word, "%.*s", (int)strcspn(p, " "), p);
        json_object_array_add(args, json_object_new_string(word));
    }
    if (c->sets & CLI_SET_ADMIN)
        json_object_array_add(sets, json_object_new_string("admin"));
    if (c->sets & CLI_SET_PBKDF)
        json_object_array_add(sets, json_object_new_string("pbkdf"));
    cli_synopsis(c, syn, sizeof syn);
    json_object_object_add(o, "command", json_object_new_string(c->words));
    json_object_object_add(o, "synopsis", json_object_new_string(syn));
    json_object_object_add(o, "arguments", args);
    json_object_object_add(o, "argumentKind",
                           json_object_new_string(kinds[c->arg_kind]));
    json_object_object_add(o, "stdinArgument",
                           json_object_new_int(c->stdin_arg));
    json_object_object_add(o, "options", opts_json(c->opts));
    json_object_object_add(o, "optionSets", sets);
    json_object_object_add(o, "summary", json_object_new_string(c->summary));
    json_object_object_add(o, "help", json_object_new_string(c->help));
    json_object_object_add(o, "example", json_object_new_string(c->example));
    return o;
}

int cli_help_json(void)
{
    json_object *top = json_object_new_object(), *cmds = json_object_new_array();
    json_object *sets = json_object_new_object();
    size_t i;

    for (i = 0; i < cli_ncommands; i++)
        json_object_array_add(cmds, command_json(&cli_commands[i]));
    json_object_object_add(sets, "admin", opts_json(cli_admin_opts));
    json_object_object_add(sets, "pbkdf", opts_json(cli_pbkdf_opts));
    json_object_object_add(top, "version",
                           json_object_new_string(CRYPTVOL_VERSION));
    json_object_object_add(top, "optionSets", sets);
    json_object_object_add(top, "commands", cmds);
    cli_print_json(top);
    json_object_put(top);
    return EXIT_OK;
}
