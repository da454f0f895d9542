/* Shared pieces of the cryptvol command line. */
#ifndef CRYPTVOL_CLI_H
#define CRYPTVOL_CLI_H

#include <stdint.h>

#include "luks/luks.h"
#include "core/secret-file.h"

/* Exit statuses scripts rely on. */
enum {
    EXIT_OK = 0,
    EXIT_ERROR = 1,
    EXIT_USAGE = 2,
    EXIT_WRONGKEY = 3,
};

/* Prints "cryptvol: <last error>" and returns the exit status for r. */
int cli_fail(int r);
/* Prints a usage error and returns EXIT_USAGE. */
int cli_usage(const char *cmd, const char *fmt, ...)
    __attribute__((format(printf, 2, 3)));

/* For getopt's '?' and ':' (optstring starts with ':'). */
int cli_bad_option(const char *cmd, int c, char **argv);

int cli_read_passphrase(const char *path, const char *what,
                        struct cv_secret *s);

struct cv_backend;
/* Offline recovery (kek-escrow.c): the passphrase of b's cryptvol-kek
 * keyslot, from the KEK escrow file opened with the recovery passphrase
 * in passfile, and that keyslot. */
int cli_kek_escrow_unlock(struct cv_backend *b, const char *escrow,
                          const char *passfile, struct cv_secret *kpass,
                          int *keyslot);
/* Parses an option value into a number / size; usage errors print. */
int cli_parse_u32(const char *cmd, const char *opt, const char *val,
                  uint32_t *out);
int cli_parse_size(const char *cmd, const char *opt, const char *val,
                   uint64_t *out);

/* --pbkdf, --pbkdf-iterations, --pbkdf-memory, --pbkdf-time-ms. */
#define CLI_PBKDF_OPTS 1000
int cli_pbkdf_option(const char *cmd, int opt, const char *val,
                     struct cv_pbkdf *p);
#define CLI_PBKDF_LONGOPTS                                         \
    { "pbkdf", required_argument, NULL, CLI_PBKDF_OPTS },          \
    { "pbkdf-iterations", required_argument, NULL, CLI_PBKDF_OPTS + 1 }, \
    { "pbkdf-memory", required_argument, NULL, CLI_PBKDF_OPTS + 2 }, \
    { "pbkdf-time-ms", required_argument, NULL, CLI_PBKDF_OPTS + 3 }

int cmd_image_create(int argc, char **argv);
int cmd_image_format(int argc, char **argv);
int cmd_image_info(int argc, char **argv);
int cmd_image_resize(int argc, char **argv);
int cmd_image_import(int argc, char **argv);
int cmd_image_export(int argc, char **argv);
int cmd_key_add(int argc, char **argv);
int cmd_key_remove(int argc, char **argv);
int cmd_key_change(int argc, char **argv);
/* Admin calls to cryptvold (client.h). */
int cmd_secret_create(int argc, char **argv);
int cmd_secret_list(int argc, char **argv);
int cmd_secret_update(int argc, char **argv);
int cmd_secret_delete(int argc, char **argv);
int cmd_audit(int argc, char **argv);
int cmd_volume_create(int argc, char **argv);
int cmd_volume_list(int argc, char **argv);
int cmd_volume_info(int argc, char **argv);
int cmd_volume_resize(int argc, char **argv);
int cmd_volume_delete(int argc, char **argv);
int cmd_cluster_info(int argc, char **argv);
int cmd_cluster_encryption_enable(int argc, char **argv);
int cmd_cluster_encryption_disable(int argc, char **argv);
int cmd_cluster_kek_rotate(int argc, char **argv);
int cmd_cluster_kek_export(int argc, char **argv);
int cmd_volume_rekey(int argc, char **argv);
int cmd_class_create(int argc, char **argv);
int cmd_class_list(int argc, char **argv);
int cmd_class_info(int argc, char **argv);
int cmd_class_delete(int argc, char **argv);
int cmd_volume_access(int argc, char **argv);
int cmd_class_access(int argc, char **argv);
/* An "access" object of the admin API, one entry a line (cmd-access.c). */
struct json_object;
void cli_print_access(struct json_object *acc, const char *indent);
int cmd_tls_init(int argc, char **argv);
/* A volume as /dev/nbdN through nbd-client (cmd-device.c). */
int cmd_device_map(int argc, char **argv);
int cmd_device_unmap(int argc, char **argv);

#endif
