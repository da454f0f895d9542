/* cryptvold's configuration: defaults, then the config file, then the
 * command line.  File keys are the long option names without the dashes
 * ("data-dir = /srv/cryptvol"); docs/cryptvold.md lists them. */
#ifndef CRYPTVOLD_CONFIG_H
#define CRYPTVOLD_CONFIG_H

#include "daemon.h"

/* The keys, NULL-terminated, and whether each takes a value; main.c makes
 * its long options from this table so flags and file keys never drift. */
struct cvd_config_key {
    const char *name;
    int has_value;
    const char *help;
};
extern const struct cvd_config_key cvd_config_keys[];

void cvd_config_defaults(struct cvd_config *c);
/* Sets one key; val is NULL for a flag given without a value.  Errors say
 * which key and why. */
int cvd_config_set(struct cvd_config *c, const char *key, const char *val);
/* Reads "key = value" lines; '#' starts a comment.  Errors give the line. */
int cvd_config_load(struct cvd_config *c, const char *path);
/* Fills defaults that depend on other keys and checks the whole. */
int cvd_config_finish(struct cvd_config *c);
void cvd_config_free(struct cvd_config *c);
/* SIGHUP: the peer-tls of the file at path (the default, require, when it
 * has none), the rest of it ignored. */
int cvd_config_reread_peer_tls(const char *path, int *mode);

#endif
