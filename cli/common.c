#include "args.h"
#include "cli.h"
#include "core/error.h"

#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <string.h>

int cli_fail(int r)
{
    const char *msg = cv_last_error();

    fprintf(stderr, "cryptvol: %s\n", msg[0] ? msg : strerror(-r));
    return r == -CV_EWRONGKEY ? EXIT_WRONGKEY : EXIT_ERROR;
}

void cli_warn(const char *fmt, ...)
{
    va_list ap;

    fprintf(stderr, "cryptvol: warning: ");
    va_start(ap, fmt);
    vfprintf(stderr, fmt, ap);
    va_end(ap);
    fputc('\n', stderr);
}

int cli_read_passphrase(const char *path, const char *what,
                        struct cv_secret *s)
{
    return cv_secret_read_file(path, what, s);
}

int cli_pbkdf_args(const struct cli_args *a, struct cv_pbkdf *p)
{
    const char *type = cli_value(a, "pbkdf");

    if (type && strcmp(type, "argon2id") && strcmp(type, "argon2i") &&
        strcmp(type, "pbkdf2"))
        return cli_usage_error(a, "--pbkdf: \"%s\" (use argon2id, argon2i "
                               "or pbkdf2)", type);
    p->type = type;
    if (cli_value(a, "pbkdf-iterations") &&
        cli_u32_value(a, "pbkdf-iterations", &p->iterations))
        return EXIT_USAGE;
    if (cli_value(a, "pbkdf-memory") &&
        cli_u32_value(a, "pbkdf-memory", &p->memory_kib))
        return EXIT_USAGE;
    if (cli_value(a, "pbkdf-time-ms") &&
        cli_u32_value(a, "pbkdf-time-ms", &p->time_ms))
        return EXIT_USAGE;
    return 0;
}
