#include "args.h"
#include "cli.h"
#include "core/error.h"
#include "core/secret-file.h"

#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <string.h>
#include <termios.h>
#include <unistd.h>

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

/* A terminal on standard input: one line, with echo off.  Signals from
 * the keyboard are off too, so that ^C cannot leave the terminal without
 * echo: it arrives as a character, and ends the read. */
static int read_terminal(const char *what, struct cv_secret *s)
{
    struct termios old, quiet;
    char name[128];
    size_t i;
    int r;

    snprintf(name, sizeof name, "%s - (the terminal)", what);
    memset(s, 0, sizeof *s);
    if (tcgetattr(STDIN_FILENO, &old) < 0)
        return cv_error(-errno, "%s: %s", name, strerror(errno));
    quiet = old;
    quiet.c_lflag &= (tcflag_t)~(ECHO | ISIG);
    quiet.c_lflag |= ECHONL;
    fprintf(stderr, "%s (not echoed, Enter ends it): ", what);
    fflush(stderr);
    if (tcsetattr(STDIN_FILENO, TCSAFLUSH, &quiet) < 0)
        return cv_error(-errno, "%s: %s", name, strerror(errno));
    r = cv_secret_read_stream(STDIN_FILENO, name, 1, s);
    tcsetattr(STDIN_FILENO, TCSAFLUSH, &old);
    for (i = 0; r == 0 && i < s->len; i++)
        if (s->data[i] == (char)old.c_cc[VINTR] ||
            s->data[i] == (char)old.c_cc[VQUIT] ||
            s->data[i] == (char)old.c_cc[VSUSP]) {
            cv_secret_free(s);
            r = cv_error(-EINTR, "%s: interrupted", name);
        }
    return r;
}

int cli_read_passphrase(const char *path, const char *what,
                        struct cv_secret *s)
{
    if (!strcmp(path, "-") && isatty(STDIN_FILENO))
        return read_terminal(what, s);
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
