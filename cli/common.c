#include "args.h"
#include "cli.h"
#include "core/error.h"
#include "core/json-util.h"
#include "core/secmem.h"
#include "core/secret-file.h"

#include <errno.h>
#include <limits.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <termios.h>
#include <unistd.h>

/* Set once from the command line, before anything can fail (cli_parse):
 * configuration, not state. */
static int errors_as_json;

void cli_json_errors(int on)
{
    errors_as_json = on;
}

void cli_print_error(const char *words, const char *code, const char *msg)
{
    json_object *o;

    if (!errors_as_json) {
        fprintf(stderr, "cryptvol%s%s: %s\n", words[0] ? " " : "", words,
                msg);
        return;
    }
    o = json_object_new_object();
    if (o && cv_json_add(o, "error", json_object_new_string(msg)) == 0 &&
        cv_json_add(o, "code", json_object_new_string(code)) == 0)
        fprintf(stderr, "%s\n", json_object_to_json_string_ext(
                    o, JSON_C_TO_STRING_PLAIN | JSON_C_TO_STRING_NOSLASHESCAPE));
    else                                /* out of memory: still say it */
        fprintf(stderr, "cryptvol: %s\n", msg);
    json_object_put(o);
}

/* The error's name with --json: the admin API's names where the errno is
 * one the daemon's HTTP status maps to (client.c), so a refusal by the
 * daemon keeps its name (docs/admin-api.md, "Errors"). */
static const char *error_code(int r)
{
    switch (-r) {
    case EINVAL: case ERANGE: case EFBIG: case ENAMETOOLONG: case ENOTSUP:
        return "BadRequest";
    case ENOENT:
        return "NotFound";
    case EEXIST: case EBUSY:
        return "Conflict";
    case ECONNREFUSED: case EAGAIN:
        return "Unavailable";
    case EREMOTE:
        return "WrongNode";
    case CV_EWRONGKEY:                  /* exit status 3 */
        return "WrongKey";
    default:
        return "Error";
    }
}

int cli_fail(int r)
{
    const char *msg = cv_last_error();

    cli_print_error("", error_code(r), msg[0] ? msg : strerror(-r));
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

#define TYPED_MAX 4096

/* Reads a line typed at the terminal (its settings in t) into s: erase
 * and kill work, Enter ends it; the keys that would send a signal end it
 * as interrupted. */
static int read_typed(const struct termios *t, const char *name,
                      struct cv_secret *s)
{
    unsigned char c;
    ssize_t n;

    for (;;) {
        n = read(STDIN_FILENO, &c, 1);
        if (n < 0 && errno == EINTR)
            continue;
        if (n < 0)
            return cv_error(-errno, "%s: %s", name, strerror(errno));
        if (n == 0 || c == '\n' || c == '\r' || c == t->c_cc[VEOF])
            break;
        if (c == t->c_cc[VINTR] || c == t->c_cc[VQUIT] || c == t->c_cc[VSUSP])
            return cv_error(-EINTR, "%s: interrupted", name);
        if (c == t->c_cc[VERASE] || c == '\b') {
            s->len -= s->len > 0;
        } else if (c == t->c_cc[VKILL]) {
            s->len = 0;
        } else if (s->len == s->alloc) {
            return cv_error(-EFBIG, "%s: more than %d bytes typed (put a "
                            "longer secret in a file)", name, TYPED_MAX);
        } else {
            s->data[s->len++] = (char)c;
        }
    }
    return s->len ? 0 : cv_error(-EINVAL, "%s: empty", name);
}

/* A terminal on standard input: one line, not echoed, in locked memory.
 * The terminal is raw meanwhile (no echo, no signals from the keyboard),
 * so that ^C cannot leave it without echo: read_typed sees the key and
 * stops. */
static int read_terminal(const char *what, struct cv_secret *s)
{
    struct termios old, raw;
    char name[128];
    int r;

    snprintf(name, sizeof name, "%s - (the terminal)", what);
    memset(s, 0, sizeof *s);
    if (tcgetattr(STDIN_FILENO, &old) < 0)
        return cv_error(-errno, "%s: %s", name, strerror(errno));
    s->alloc = TYPED_MAX;
    s->data = cv_secmem_alloc(s->alloc);
    if (!s->data)
        return cv_error_prefix(-ENOMEM, "%s", name);
    raw = old;
    raw.c_lflag &= (tcflag_t)~(ECHO | ICANON | ISIG);
    raw.c_cc[VMIN] = 1;
    raw.c_cc[VTIME] = 0;
    /* Raw before the prompt: what is typed after it is never echoed. */
    r = tcsetattr(STDIN_FILENO, TCSAFLUSH, &raw) < 0 ?
        cv_error(-errno, "%s: %s", name, strerror(errno)) : 0;
    if (r == 0) {
        fprintf(stderr, "%s (not echoed, Enter ends it): ", what);
        fflush(stderr);
        r = read_typed(&old, name, s);
    }
    tcsetattr(STDIN_FILENO, TCSAFLUSH, &old);
    fputc('\n', stderr);
    if (r < 0)
        cv_secret_free(s);
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

/* The names the API takes (cli_admin_path checks them): what names it. */
static int check_name(const char *what, const char *name)
{
    char scratch[128];

    return cli_admin_path(scratch, sizeof scratch, what, "", name, "");
}

int cli_snapshot_arg(const struct cli_args *a, size_t i,
                     char vol[CLI_NAME_MAX], char snap[CLI_NAME_MAX])
{
    const char *arg = a->arg[i], *at = strchr(arg, '@');
    size_t vlen = at ? (size_t)(at - arg) : 0;
    int r;

    if (!at || vlen == 0 || !at[1])
        return cli_usage_error(a, "expected VOL@SNAP, not \"%.140s\" (%s)",
                               arg, !at ? "no @SNAP: which snapshot?" :
                               vlen == 0 ? "no volume before the @" :
                               "no snapshot name after the @");
    /* A longer part is no valid name: check_name says so, whole. */
    snprintf(vol, CLI_NAME_MAX, "%.*s", (int)vlen, arg);
    snprintf(snap, CLI_NAME_MAX, "%s", at + 1);
    if (vlen >= CLI_NAME_MAX) {
        char whole[256];
        snprintf(whole, sizeof whole, "%.*s", (int)vlen, arg);
        return check_name("volume", whole);
    }
    r = check_name("volume", vol);
    if (r == 0)
        r = check_name("snapshot", strlen(at + 1) >= CLI_NAME_MAX ? at + 1 :
                       snap);
    return r;
}

/* "dir/name" into its directory ("." when none) and its last part. */
static int split_path(const char *file, char *dir, size_t len,
                      const char **base)
{
    const char *slash = strrchr(file, '/');

    *base = slash ? slash + 1 : file;
    if (!**base || !strcmp(*base, ".") || !strcmp(*base, ".."))
        return -EISDIR;
    if (!slash)
        snprintf(dir, len, ".");
    else if (slash == file)
        snprintf(dir, len, "/");
    else if ((size_t)(slash - file) >= len)
        return -ENAMETOOLONG;
    else
        snprintf(dir, len, "%.*s", (int)(slash - file), file);
    return 0;
}

int cli_daemon_path(const struct cli_args *a, const char *file, char *buf,
                    size_t len)
{
    char dir[PATH_MAX], real[PATH_MAX];
    const char *base;
    int r;

    if (a->admin.url && file[0] != '/')
        return cli_usage_error(a, "%.200s: a relative path with --url (the "
                               "daemon opens it on its own host: give an "
                               "absolute path there)", file);
    r = split_path(file, dir, sizeof dir, &base);
    if (r == -EISDIR)
        return cli_usage_error(a, "%.200s: names a directory; FILE is a "
                               "file's path", file);
    if (r < 0)
        return cv_error(r, "%.200s: path too long", file);
    if (a->admin.url) {
        snprintf(buf, len, "%s", file);
        return 0;
    }
    if (!realpath(dir, real))
        return cv_error(-errno, "%.200s: directory %.200s: %s", file, dir,
                        strerror(errno));
    if (snprintf(buf, len, "%s%s%s", real, strcmp(real, "/") ? "/" : "",
                 base) >= (int)len)
        return cv_error(-ENAMETOOLONG, "%.200s: path too long", file);
    return 0;
}
