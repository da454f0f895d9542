/* image key add, remove, change: keyslot management. */
#include "store/backend.h"
#include "cli.h"
#include "core/error.h"

#include <getopt.h>
#include <stdio.h>
#include <string.h>

enum key_op { KEY_ADD, KEY_REMOVE, KEY_CHANGE };

static int key_command(const char *cmd, enum key_op op, int argc, char **argv)
{
    static const struct option opts[] = {
        { "passphrase-file", required_argument, NULL, 'p' },
        { "new-passphrase-file", required_argument, NULL, 'n' },
        { "force", no_argument, NULL, 'f' },
        CLI_PBKDF_LONGOPTS,
        { 0 } };
    const char *passfile = NULL, *newfile = NULL;
    struct cv_secret pass = { 0 }, newpass = { 0 };
    struct cv_pbkdf pbkdf = { 0 };
    struct cv_backend *b = NULL;
    struct cv_luks *l = NULL;
    int force = 0, c, r;

    while ((c = getopt_long(argc, argv, ":", opts, NULL)) != -1) {
        switch (c) {
        case 'p': passfile = optarg; break;
        case 'n': newfile = optarg; break;
        case 'f': force = 1; break;
        default:
            if (c < CLI_PBKDF_OPTS)
                return cli_bad_option(cmd, c, argv);
            if (cli_pbkdf_option(cmd, c, optarg, &pbkdf))
                return EXIT_USAGE;
        }
    }
    if (argc - optind != 1 || !passfile)
        return cli_usage(cmd, "needs PATH and --passphrase-file F");
    if (op != KEY_REMOVE && !newfile)
        return cli_usage(cmd, "needs --new-passphrase-file G");
    if (op == KEY_REMOVE && newfile)
        return cli_usage(cmd, "takes no --new-passphrase-file");
    r = cli_read_passphrase(passfile, "passphrase file", &pass);
    if (r == 0 && newfile)
        r = cli_read_passphrase(newfile, "new passphrase file", &newpass);
    if (r == 0)
        r = cv_backend_file_open(argv[optind], 0, &b);
    if (r == 0)
        r = cv_luks_load(b, &l);
    if (r == 0) {
        switch (op) {
        case KEY_ADD:
            r = cv_luks_add_key(l, pass.data, pass.len, newpass.data,
                                newpass.len, &pbkdf);
            break;
        case KEY_CHANGE:
            r = cv_luks_change_key(l, pass.data, pass.len, newpass.data,
                                   newpass.len, &pbkdf);
            break;
        case KEY_REMOVE:
            r = cv_luks_remove_key(l, pass.data, pass.len, force);
            break;
        }
    }
    if (r >= 0)
        printf("%s: keyslot %d %s\n", argv[optind], r,
               op == KEY_ADD ? "added" : op == KEY_CHANGE ? "changed" :
               "removed");
    cv_luks_free(l);
    cv_backend_close(b);
    cv_secret_free(&pass);
    cv_secret_free(&newpass);
    return r < 0 ? cli_fail(r) : EXIT_OK;
}

int cmd_key_add(int argc, char **argv)
{
    return key_command("image key add", KEY_ADD, argc, argv);
}

int cmd_key_remove(int argc, char **argv)
{
    return key_command("image key remove", KEY_REMOVE, argc, argv);
}

int cmd_key_change(int argc, char **argv)
{
    return key_command("image key change", KEY_CHANGE, argc, argv);
}
