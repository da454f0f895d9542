/* cryptvol: the command line.  Offline work on local LUKS images, and admin
 * calls to cryptvold (secrets, classes, volumes, the cluster KEK, the audit
 * log). */
#include "cli.h"
#include "client.h"

#include <stdio.h>
#include <string.h>

/* "cryptvol GROUP [NAME [SUB]]": a NULL name is a command of one word. */
struct command {
    const char *group, *name, *sub;
    int (*fn)(int argc, char **argv);
    const char *synopsis;
};

static const struct command commands[] = {
    { "image", "create", NULL, cmd_image_create, "PATH --size SIZE" },
    { "image", "format", NULL, cmd_image_format,
      "PATH --passphrase-file F [--type luks2|luks1] [--cipher aes-256|aes-128]\n"
      "      [--sector-size N] [--pbkdf argon2id|argon2i|pbkdf2] [--pbkdf-iterations N]\n"
      "      [--pbkdf-memory KIB] [--pbkdf-time-ms MS] [--force]" },
    { "image", "info", NULL, cmd_image_info, "PATH [--json]" },
    { "image", "import", NULL, cmd_image_import,
      "SRC PATH --passphrase-file F [--offset N]      (SRC - is stdin)" },
    { "image", "export", NULL, cmd_image_export,
      "PATH DST {--passphrase-file F | --kek-escrow ESCROW\n"
      "      --recovery-passphrase-file F} [--offset N] [--length N]  (DST - is stdout)" },
    { "image", "resize", NULL, cmd_image_resize,
      "PATH --size EFFECTIVE --passphrase-file F [--allow-shrink]" },
    { "image", "key", "add", cmd_key_add,
      "PATH --passphrase-file F --new-passphrase-file G [--pbkdf...]" },
    { "image", "key", "remove", cmd_key_remove,
      "PATH --passphrase-file F [--force]" },
    { "image", "key", "change", cmd_key_change,
      "PATH --passphrase-file F --new-passphrase-file G [--pbkdf...]" },
    { "secret", "create", NULL, cmd_secret_create, "NAME --from-file F" },
    { "secret", "list", NULL, cmd_secret_list, "" },
    { "secret", "update", NULL, cmd_secret_update, "NAME --from-file F" },
    { "secret", "delete", NULL, cmd_secret_delete, "NAME" },
    { "class", "create", NULL, cmd_class_create,
      "NAME [--encrypted] [--secret NAME | --secret-template 'T']\n"
      "      [--type luks2|luks1] [--cipher aes-xts-plain64 [--key-size 512|256]\n"
      "      | --cipher aes-256|aes-128] [--replicas N]\n"
      "      (T may use ${volume.name} and ${class.name})" },
    { "class", "list", NULL, cmd_class_list, "" },
    { "class", "info", NULL, cmd_class_info, "NAME" },
    { "class", "delete", NULL, cmd_class_delete, "NAME" },
    { "class", "access", NULL, cmd_class_access,
      "NAME [--show] [--allow ID...] [--deny ID...] [--remove ID...] [--clear]" },
    { "volume", "create", NULL, cmd_volume_create,
      "NAME --size SIZE [--class C | [--secret NAME] [--type luks2|luks1]\n"
      "      [--cipher aes-256|aes-128] [--plaintext]] [--pbkdf...]" },
    { "volume", "list", NULL, cmd_volume_list, "" },
    { "volume", "info", NULL, cmd_volume_info, "NAME" },
    { "volume", "resize", NULL, cmd_volume_resize, "NAME --size SIZE [--allow-shrink]" },
    { "volume", "rekey", NULL, cmd_volume_rekey, "NAME --secret NEW" },
    { "volume", "delete", NULL, cmd_volume_delete, "NAME" },
    { "volume", "access", NULL, cmd_volume_access,
      "NAME [--show] [--allow ID...] [--deny ID...] [--remove ID...] [--clear]\n"
      "      who may open it over NBD; ID: cn:NAME dns:NAME cert:NAME (or NAME)\n"
      "      psk:IDENTITY uid:N.  Without a list of its own a volume takes its\n"
      "      class's; without either, nbd-access-default decides" },
    { "cluster", "info", NULL, cmd_cluster_info, "" },
    { "cluster", "encryption", "enable", cmd_cluster_encryption_enable,
      "[--kek-protection tpm|software]   (only while there are no volumes)" },
    { "cluster", "encryption", "disable", cmd_cluster_encryption_disable,
      "                                  (refused: it cannot be disabled)" },
    { "cluster", "kek", "rotate", cmd_cluster_kek_rotate, "[--no-wait]" },
    { "cluster", "kek", "export", cmd_cluster_kek_export,
      "OUT --recovery-passphrase-file F  (escrow for image export --kek-escrow)" },
    { "audit", NULL, NULL, cmd_audit,
      "[--since T]  (T: epoch seconds, 2026-11-23T10:00:00Z, or 10m, 2h, 1d ago)" },
    { "device", "map", NULL, cmd_device_map,
      "NAME [--device /dev/nbdN] [--server HOST[:PORT] | --unix PATH]\n"
      "      [--tls-dir DIR | --no-tls] [--tls-hostname NAME]  (kernel NBD client)" },
    { "device", "unmap", NULL, cmd_device_unmap, "/dev/nbdN" },
    { "tls", "init", NULL, cmd_tls_init,
      "DIR [--host NAME]... [--client-cn CN]  (demo CA, server and client certificates)" },
};

#define NCOMMANDS (sizeof commands / sizeof commands[0])

/* More for COMMAND --help than the synopsis says. */
static const struct {
    int (*fn)(int argc, char **argv);
    const char *text;
} help_texts[] = {
    { cmd_image_export,
      "Writes the plaintext of the LUKS image PATH to DST (- is stdout; a new\n"
      "file is mode 0600 and sparse where the data is zero).  The key is either\n"
      "  --passphrase-file F        a passphrase of one of its keyslots, or\n"
      "  --kek-escrow ESCROW --recovery-passphrase-file F\n"
      "                             offline disaster recovery of a volume of a\n"
      "                             cluster with KEK encryption: the escrow (mode\n"
      "                             0600), opened with the recovery passphrase,\n"
      "                             holds the KEK generation that unwraps the\n"
      "                             image's cryptvol-kek token, which opens its\n"
      "                             keyslot.\n"
      "--offset N and --length N select a byte range of the volume.  A wrong\n"
      "passphrase or recovery passphrase exits with status 3." },
};

static void print_command(FILE *f, const struct command *c)
{
    fprintf(f, "  cryptvol %s%s%s%s%s %s\n", c->group, c->name ? " " : "",
            c->name ? c->name : "", c->sub ? " " : "", c->sub ? c->sub : "",
            c->synopsis);
}

/* COMMAND --help (before any "--"). */
static int wants_help(int argc, char **argv)
{
    int i;

    for (i = 1; i < argc && strcmp(argv[i], "--") != 0; i++)
        if (!strcmp(argv[i], "--help"))
            return 1;
    return 0;
}

static int command_help(const struct command *c)
{
    size_t i;

    printf("Usage:\n");
    print_command(stdout, c);
    for (i = 0; i < sizeof help_texts / sizeof help_texts[0]; i++)
        if (help_texts[i].fn == c->fn)
            printf("\n%s\n", help_texts[i].text);
    return EXIT_OK;
}

static void usage(FILE *f)
{
    size_t i;

    fprintf(f, "Usage: cryptvol COMMAND ...\n\n");
    for (i = 0; i < NCOMMANDS; i++)
        print_command(f, &commands[i]);
    fprintf(f, "\nsecret, volume, class, cluster and audit commands talk to cryptvold and take --json, and\n"
               "--socket PATH (else $CRYPTVOL_SOCKET, else " CLI_DEFAULT_SOCKET ")\n"
               "or --url https://HOST:PORT --tls-dir DIR.\n");
    fprintf(f, "\nSizes take K, M, G, T suffixes (powers of 1024).\n"
               "Exit status: 0 ok, 1 error, 2 usage, 3 wrong passphrase.\n");
}

int main(int argc, char **argv)
{
    size_t i;
    int skip;

    if (argc < 2)
        return usage(stderr), EXIT_USAGE;
    if (!strcmp(argv[1], "help") || !strcmp(argv[1], "--help") ||
        !strcmp(argv[1], "-h"))
        return usage(stdout), EXIT_OK;
    if (!strcmp(argv[1], "--version") || !strcmp(argv[1], "version"))
        return puts("cryptvol " CRYPTVOL_VERSION), EXIT_OK;
    for (i = 0; i < NCOMMANDS; i++) {
        const struct command *c = &commands[i];
        if (strcmp(argv[1], c->group))
            continue;
        if (c->name && (argc < 3 || strcmp(argv[2], c->name)))
            continue;
        if (c->sub && (argc < 4 || strcmp(argv[3], c->sub)))
            continue;
        skip = c->sub ? 3 : c->name ? 2 : 1;
        if (wants_help(argc - skip, argv + skip))
            return command_help(c);
        /* argv[0] of the command is its name, for getopt messages. */
        return c->fn(argc - skip, argv + skip);
    }
    fprintf(stderr, "cryptvol: unknown command \"%s%s%s\" (see cryptvol "
            "help)\n", argv[1], argc > 2 ? " " : "", argc > 2 ? argv[2] : "");
    return EXIT_USAGE;
}
