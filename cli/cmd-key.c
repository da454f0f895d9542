/* image key add, remove, change: keyslot management. */
#include "store/backend.h"
#include "args.h"
#include "cli.h"
#include "core/error.h"

#include <stdio.h>
#include <string.h>

enum key_op { KEY_ADD, KEY_REMOVE, KEY_CHANGE };

static int key_command(struct cli_args *a, enum key_op op)
{
    const char *passfile = cli_value(a, "passphrase-file");
    const char *newfile = op == KEY_REMOVE ? NULL :
                          cli_value(a, "new-passphrase-file");
    const char *path = a->arg[0];
    struct cv_secret pass = { 0 }, newpass = { 0 };
    struct cv_pbkdf pbkdf = { 0 };
    struct cv_backend *b = NULL;
    struct cv_luks *l = NULL;
    int force = op == KEY_REMOVE && cli_flag(a, "force"), r;

    if (op != KEY_REMOVE && cli_pbkdf_args(a, &pbkdf))
        return EXIT_USAGE;
    r = cli_read_passphrase(passfile, "passphrase file", &pass);
    if (r == 0 && newfile)
        r = cli_read_passphrase(newfile, "new passphrase file", &newpass);
    if (r == 0)
        r = cv_backend_file_open(path, 0, &b);
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
        printf("%s: keyslot %d %s\n", path, r,
               op == KEY_ADD ? "added" : op == KEY_CHANGE ? "changed" :
               "removed");
    cv_luks_free(l);
    cv_backend_close(b);
    cv_secret_free(&pass);
    cv_secret_free(&newpass);
    return r < 0 ? cli_fail(r) : EXIT_OK;
}

int cmd_key_add(struct cli_args *a)
{
    return key_command(a, KEY_ADD);
}

int cmd_key_remove(struct cli_args *a)
{
    return key_command(a, KEY_REMOVE);
}

int cmd_key_change(struct cli_args *a)
{
    return key_command(a, KEY_CHANGE);
}
