/* Calls to cryptvold's admin API (docs/admin-api.md) with libcurl: over the
 * unix socket by default, or over HTTPS with --url and --tls-dir. */
#ifndef CRYPTVOL_CLIENT_H
#define CRYPTVOL_CLIENT_H

#include <json-c/json.h>
#include <stddef.h>

#define CLI_DEFAULT_SOCKET "/var/lib/cryptvol/admin.sock"

/* Where the daemon is and how to print; from the global options (args.h),
 * then the environment (CRYPTVOL_SOCKET), then CLI_DEFAULT_SOCKET. */
struct cli_admin {
    const char *cmd;            /* "volume create", for usage errors */
    const char *socket;
    const char *url;            /* "https://host:port" */
    const char *tls_dir;        /* ca-cert.pem, client-cert.pem, client-key.pem */
    int json;                   /* print the API's JSON */
};

/* One request.  body (may be NULL) is sent as is, len bytes.  On a 2xx
 * answer returns 0 and *out (the parsed JSON, for json_object_put).
 * Otherwise a negative errno with the message the daemon gave, or one
 * saying it could not be reached ("cannot reach cryptvold at PATH: ..."). */
int cli_admin_call(struct cli_admin *a, const char *method, const char *path,
                   const char *body, size_t len, json_object **out);
/* The same with a JSON body. */
int cli_admin_call_json(struct cli_admin *a, const char *method,
                        const char *path, json_object *body, json_object **out);

/* A request whose JSON body carries a secret value: {"name": name (when
 * not NULL), field: base64 of s}.  The body is built in locked memory. */
struct cv_secret;
int cli_admin_call_secret(struct cli_admin *a, const char *method,
                          const char *path, const char *name,
                          const char *field, const struct cv_secret *s,
                          json_object **out);
/* prefix NAME suffix into buf, after checking NAME is a valid volume or
 * secret name (what) so nothing but the name lands in the URL. */
int cli_admin_path(char *buf, size_t len, const char *what, const char *prefix,
                   const char *name, const char *suffix);

/* "GROUP info|delete NAME": calls method on prefix NAME (checked as a
 * name of the command's kind) and ends like cli_admin_finish. */
struct cli_args;
int cli_admin_call_on_name(struct cli_args *a, const char *method,
                           const char *prefix, void (*print)(json_object *));
/* The same with no argument: GET path. */
int cli_admin_get(struct cli_args *a, const char *path,
                  void (*print)(json_object *));
/* Ends a command: the error of r < 0, else out printed as --json or by
 * human; frees out; returns the exit status. */
int cli_admin_finish(struct cli_admin *a, int r, json_object *out,
                     void (*human)(json_object *));
/* Prints o pretty (for --json). */
void cli_print_json(json_object *o);

/* Field access for printing: "" / 0 when absent or null. */
const char *cli_str(json_object *o, const char *key);
long long cli_int(json_object *o, const char *key);
int cli_bool(json_object *o, const char *key);

#endif
