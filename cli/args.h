/* The command line as one table describes it (commands.c): every command,
 * its arguments, its options with their help, an example.  The parser
 * (args.c), the help (help.c), the listing for completion and man pages
 * (cryptvol help --json, cryptvol __complete) all read that table, so a
 * command cannot take an option its help does not list. */
#ifndef CRYPTVOL_CLI_ARGS_H
#define CRYPTVOL_CLI_ARGS_H

#include <stddef.h>
#include <stdint.h>
#include <stdio.h>

#include "client.h"

enum cli_opt_kind {
    CLI_FLAG,       /* --force */
    CLI_VALUE,      /* --size SIZE, at most once */
    CLI_REPEAT,     /* --host NAME, any number of times */
    CLI_WORDS,      /* --allow ID...: the words after it, to the next option */
};

#define CLI_REQUIRED 1u     /* the command needs it */
#define CLI_STDIN    2u     /* "-" is standard input */

struct cli_opt {
    const char *name;           /* without "--" */
    enum cli_opt_kind kind;
    unsigned flags;
    const char *meta;           /* "SIZE", "luks2|luks1"; NULL for a flag */
    const char *help;           /* one sentence; help.c wraps it */
};

/* Options several commands take, listed once (commands.c). */
enum cli_set {
    CLI_SET_ADMIN = 1u,         /* --socket --url --tls-dir --json */
    CLI_SET_PBKDF = 2u,         /* --pbkdf --pbkdf-iterations ... */
};

/* What a command's first argument is, for messages and completion.  A
 * snapshot is named VOL@SNAP, a backup by its id (bk-...). */
enum cli_arg_kind { CLI_ARG_FILE, CLI_ARG_VOLUME, CLI_ARG_SECRET,
                    CLI_ARG_CLASS, CLI_ARG_SNAPSHOT, CLI_ARG_BACKUP };

struct cli_args;

struct cli_cmd {
    const char *words;          /* "volume create" */
    const char *args;           /* "NAME", "SRC PATH", "": each required;
                                   "[NAME]" optional (after the others) */
    enum cli_arg_kind arg_kind;
    int stdin_arg;              /* 1-based: that argument may be "-" (stdin) */
    const struct cli_opt *opts; /* its own, ended by { NULL } */
    unsigned sets;              /* enum cli_set */
    const char *summary;        /* one line, for lists */
    const char *help;           /* paragraphs, "\n\n" between them */
    const char *example;        /* one command line, without "cryptvol " */
    int (*fn)(struct cli_args *a);
};

extern const struct cli_cmd cli_commands[];
extern const size_t cli_ncommands;
/* The sets: options any command of the set takes. */
extern const struct cli_opt cli_admin_opts[];
extern const struct cli_opt cli_pbkdf_opts[];

/* One option as given, in command-line order. */
struct cli_given {
    const struct cli_opt *opt;
    const char *val;            /* NULL for a flag */
};

#define CLI_MAX_ARGS 4

struct cli_args {
    const struct cli_cmd *cmd;
    const char *arg[CLI_MAX_ARGS];
    size_t nargs;
    struct cli_given *given;
    size_t ngiven;
    /* The daemon to call and --json, from CLI_SET_ADMIN. */
    struct cli_admin admin;
};

/* Parses argv (argv[0] is the program) into *a.  Returns -1 when the
 * command is to run; otherwise what main returns: EXIT_OK after --help or
 * --version, EXIT_USAGE after a usage error (printed: one line on stderr
 * naming the problem). */
int cli_parse(int argc, char **argv, struct cli_args *a);
void cli_args_free(struct cli_args *a);

/* What the command was given.  name must be an option of the command (a
 * typo here is a bug: the program aborts saying so). */
const char *cli_value(const struct cli_args *a, const char *name);
int cli_flag(const struct cli_args *a, const char *name);
/* Walks the values of a repeated option or of a word list: *pos starts at
 * 0; NULL after the last. */
const char *cli_next_value(const struct cli_args *a, const char *name,
                           size_t *pos);

/* Parses --opt's value: a size from min to max bytes (the message names
 * the range), or a number.  Usage errors print and return EXIT_USAGE. */
int cli_size_value(const struct cli_args *a, const char *name, uint64_t min,
                   uint64_t max, uint64_t *out);
int cli_u32_value(const struct cli_args *a, const char *name, uint32_t *out);

/* Edits (insertions, deletions, substitutions) from a to b, for "did you
 * mean": stops counting at 9. */
int cli_distance(const char *a, const char *b);

/* "cryptvol volume create: <message>": a usage error, EXIT_USAGE. */
int cli_usage_error(const struct cli_args *a, const char *fmt, ...)
    __attribute__((format(printf, 2, 3)));

/* help.c: the lists and pages --help shows, and the table as JSON. */
const struct cli_cmd *cli_find(const char *words);
/* 1 if some command's words start with prefix followed by a space. */
int cli_is_group(const char *prefix);
void cli_help_top(FILE *f);
void cli_help_group(FILE *f, const char *group);
void cli_help_command(FILE *f, const struct cli_cmd *c);
/* "create, list, info" of a group. */
void cli_group_words(const char *group, char *buf, size_t len);
/* "cryptvol volume create NAME --size SIZE [OPTIONS]" */
void cli_synopsis(const struct cli_cmd *c, char *buf, size_t len);
int cli_help_json(void);
/* complete.c: candidates for the last of words (cryptvol __complete). */
int cli_complete(int n, char **words);

#endif
