#include "cli.h"
#include "core/error.h"
#include "core/size.h"

#include <errno.h>
#include <getopt.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

int cli_fail(int r)
{
    const char *msg = cv_last_error();

    fprintf(stderr, "cryptvol: %s\n", msg[0] ? msg : strerror(-r));
    return r == -CV_EWRONGKEY ? EXIT_WRONGKEY : EXIT_ERROR;
}

int cli_usage(const char *cmd, const char *fmt, ...)
{
    va_list ap;

    fprintf(stderr, "cryptvol %s: ", cmd);
    va_start(ap, fmt);
    vfprintf(stderr, fmt, ap);
    va_end(ap);
    fprintf(stderr, " (see cryptvol help)\n");
    return EXIT_USAGE;
}

int cli_bad_option(const char *cmd, int c, char **argv)
{
    const char *opt = argv[optind - 1];

    if (c == ':')
        return cli_usage(cmd, "option %s needs a value", opt);
    return cli_usage(cmd, "unknown option %s", opt);
}

int cli_read_passphrase(const char *path, const char *what,
                        struct cv_secret *s)
{
    return cv_secret_read_file(path, what, s);
}

int cli_parse_u32(const char *cmd, const char *opt, const char *val,
                  uint32_t *out)
{
    char *end;
    unsigned long n;

    errno = 0;
    n = strtoul(val, &end, 10);
    if (errno || *end || end == val || n > UINT32_MAX || val[0] == '-')
        return cli_usage(cmd, "--%s: \"%s\" is not a number", opt, val);
    *out = (uint32_t)n;
    return 0;
}

int cli_parse_size(const char *cmd, const char *opt, const char *val,
                   uint64_t *out)
{
    if (cv_parse_size(val, out) < 0)
        return cli_usage(cmd, "--%s: %s", opt, cv_last_error());
    return 0;
}

int cli_pbkdf_option(const char *cmd, int opt, const char *val,
                     struct cv_pbkdf *p)
{
    switch (opt - CLI_PBKDF_OPTS) {
    case 0:
        if (strcmp(val, "argon2id") && strcmp(val, "argon2i") &&
            strcmp(val, "pbkdf2"))
            return cli_usage(cmd, "--pbkdf: \"%s\" (use argon2id, argon2i "
                             "or pbkdf2)", val);
        p->type = val;
        return 0;
    case 1:
        return cli_parse_u32(cmd, "pbkdf-iterations", val, &p->iterations);
    case 2:
        return cli_parse_u32(cmd, "pbkdf-memory", val, &p->memory_kib);
    case 3:
        return cli_parse_u32(cmd, "pbkdf-time-ms", val, &p->time_ms);
    }
    return cli_usage(cmd, "unknown option");
}
