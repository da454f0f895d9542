/* cryptvol: the command line.  Offline work on local LUKS images, and admin
 * calls to cryptvold (secrets, classes, volumes). */
#include "cli.h"
#include "client.h"

#include <stdio.h>
#include <string.h>

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
      "PATH DST --passphrase-file F [--offset N] [--length N]  (DST - is stdout)" },
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
    { "secret", "delete", NULL, cmd_secret_delete, "NAME" },
    { "class", "create", NULL, cmd_class_create,
      "NAME [--encrypted] [--secret NAME | --secret-template 'T']\n"
      "      [--type luks2|luks1] [--cipher aes-xts-plain64 [--key-size 512|256]\n"
      "      | --cipher aes-256|aes-128] [--replicas N]\n"
      "      (T may use ${volume.name} and ${class.name})" },
    { "class", "list", NULL, cmd_class_list, "" },
    { "class", "info", NULL, cmd_class_info, "NAME" },
    { "class", "delete", NULL, cmd_class_delete, "NAME" },
    { "volume", "create", NULL, cmd_volume_create,
      "NAME --size SIZE [--class C | [--secret NAME] [--type luks2|luks1]\n"
      "      [--cipher aes-256|aes-128] [--plaintext]] [--pbkdf...]" },
    { "volume", "list", NULL, cmd_volume_list, "" },
    { "volume", "info", NULL, cmd_volume_info, "NAME" },
    { "volume", "resize", NULL, cmd_volume_resize, "NAME --size SIZE [--allow-shrink]" },
    { "volume", "rekey", NULL, cmd_volume_rekey, "NAME --secret NEW" },
    { "volume", "delete", NULL, cmd_volume_delete, "NAME" },
    { "tls", "init", NULL, cmd_tls_init,
      "DIR [--host NAME]... [--client-cn CN]  (demo CA, server and client certificates)" },
};

#define NCOMMANDS (sizeof commands / sizeof commands[0])

static void usage(FILE *f)
{
    size_t i;

    fprintf(f, "Usage: cryptvol COMMAND ...\n\n");
    for (i = 0; i < NCOMMANDS; i++)
        fprintf(f, "  cryptvol %s %s%s%s %s\n", commands[i].group,
                commands[i].name, commands[i].sub ? " " : "",
                commands[i].sub ? commands[i].sub : "", commands[i].synopsis);
    fprintf(f, "\nsecret, class and volume commands talk to cryptvold and take --json, and\n"
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
        if (strcmp(argv[1], c->group) || argc < 3 || strcmp(argv[2], c->name))
            continue;
        if (c->sub && (argc < 4 || strcmp(argv[3], c->sub)))
            continue;
        skip = c->sub ? 3 : 2;
        /* argv[0] of the command is its name, for getopt messages. */
        return c->fn(argc - skip, argv + skip);
    }
    fprintf(stderr, "cryptvol: unknown command \"%s%s%s\" (see cryptvol "
            "help)\n", argv[1], argc > 2 ? " " : "", argc > 2 ? argv[2] : "");
    return EXIT_USAGE;
}
