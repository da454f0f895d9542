/* cryptvol: the command line.  Offline work on local LUKS images, and admin
 * calls to cryptvold (secrets, classes, volumes, the cluster KEK, the audit
 * log).  Every command, option and help text is in commands.c; args.c
 * parses a command line against it. */
#include "args.h"
#include "cli.h"

int main(int argc, char **argv)
{
    struct cli_args a;
    int r = cli_parse(argc, argv, &a);

    if (r < 0)
        r = a.cmd->fn(&a);
    cli_args_free(&a);
    return r;
}
