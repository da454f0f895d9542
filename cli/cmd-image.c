/* image create, format, info, resize: whole-image operations. */
#include "store/backend.h"
#include "store/chain.h"
#include "args.h"
#include "cli.h"
#include "core/error.h"
#include "progress.h"
#include "core/secmem.h"
#include "core/size.h"

#include <errno.h>
#include <fcntl.h>
#include <json-c/json.h>
#include <stdio.h>
#include <string.h>
#include <unistd.h>

/* A file's size: off_t's range. */
#define FILE_MAX ((uint64_t)INT64_MAX)

int cmd_image_create(struct cli_args *a)
{
    const char *path = a->arg[0];
    uint64_t size = 0;
    int fd;

    if (cli_size_value(a, "size", 1, FILE_MAX, &size))
        return EXIT_USAGE;
    fd = open(path, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0600);
    if (fd < 0)
        return cli_fail(cv_error(-errno, "%s: %s%s", path, strerror(errno),
                                 errno == EEXIST ?
                                 " (refusing to overwrite it)" : ""));
    if (ftruncate(fd, (off_t)size) != 0) {
        int e = errno;
        char human[64];
        close(fd);
        unlink(path);
        return cli_fail(cv_error(-e, "%s: setting its size to %s: %s", path,
                                 cv_format_size_exact(size, human,
                                                      sizeof human),
                                 strerror(e)));
    }
    close(fd);
    return EXIT_OK;
}

static int parse_cipher(const struct cli_args *a, const char *val,
                        unsigned *bits)
{
    if (!strcmp(val, "aes-256") || !strcmp(val, "aes-xts-plain64"))
        *bits = 256;
    else if (!strcmp(val, "aes-128"))
        *bits = 128;
    else
        return cli_usage_error(a, "--cipher: \"%s\" (use aes-256 or "
                               "aes-128)", val);
    return 0;
}

static int parse_type(const struct cli_args *a, const char *val,
                      int *version)
{
    if (!strcmp(val, "luks2"))
        *version = 2;
    else if (!strcmp(val, "luks1"))
        *version = 1;
    else
        return cli_usage_error(a, "--type: \"%s\" (use luks2 or luks1)",
                               val);
    return 0;
}

/* Refuses to format over an existing LUKS header, even a damaged one,
 * without --force: that destroys the only way to read the data (a damaged
 * header may still be restored from a backup). */
static int check_not_luks(struct cv_backend *b)
{
    int r = cv_luks_probe(b);

    if (r <= 0)
        return r;
    return cv_error(-EEXIST, "%s: already holds a LUKS header; formatting "
                    "destroys its data (use --force)", b->name);
}

/* --type, --cipher, --sector-size and the key derivation into *fp. */
static int format_params(const struct cli_args *a, struct cv_format_params *fp)
{
    if (cli_value(a, "type") &&
        parse_type(a, cli_value(a, "type"), &fp->luks_version))
        return EXIT_USAGE;
    if (cli_value(a, "cipher") &&
        parse_cipher(a, cli_value(a, "cipher"), &fp->key_bits))
        return EXIT_USAGE;
    if (cli_value(a, "sector-size") &&
        cli_u32_value(a, "sector-size", &fp->sector_size))
        return EXIT_USAGE;
    if (cli_pbkdf_args(a, &fp->pbkdf))
        return EXIT_USAGE;
    if (fp->luks_version == 1 && fp->pbkdf.type &&
        strcmp(fp->pbkdf.type, "pbkdf2"))
        return cli_usage_error(a, "LUKS1 supports only --pbkdf pbkdf2");
    return 0;
}

int cmd_image_format(struct cli_args *a)
{
    struct cv_format_params fp = { .luks_version = 2, .key_bits = 256 };
    const char *passfile = cli_value(a, "passphrase-file");
    struct cv_backend *b = NULL;
    struct cv_secret pass = { 0 };
    struct progress prog;
    int force = cli_flag(a, "force"), r;

    if (format_params(a, &fp))
        return EXIT_USAGE;
    r = cli_read_passphrase(passfile, "passphrase file", &pass);
    if (r == 0)
        r = cv_backend_file_open(a->arg[0], 0, &b);
    if (r == 0 && !force)
        r = check_not_luks(b);
    if (r == 0) {
        progress_start(&prog, "formatting (key derivation)", 0);
        progress_tick(&prog);
        r = cv_luks_format(b, &fp, pass.data, pass.len);
        progress_end(&prog, r == 0);
    }
    cv_backend_close(b);
    cv_secret_free(&pass);
    return r < 0 ? cli_fail(r) : EXIT_OK;
}

static void print_info_json(const char *path, const struct cv_luks_info *i)
{
    json_object *o = json_object_new_object(), *slots = json_object_new_array();
    int k;

    json_object_object_add(o, "path", json_object_new_string(path));
    json_object_object_add(o, "type", json_object_new_string(
                               i->luks_version == 1 ? "luks1" : "luks2"));
    json_object_object_add(o, "uuid", json_object_new_string(i->uuid));
    json_object_object_add(o, "cipher", json_object_new_string(i->cipher));
    json_object_object_add(o, "keyBits", json_object_new_int(i->key_bits));
    json_object_object_add(o, "sectorSize", json_object_new_int(i->sector_size));
    json_object_object_add(o, "dataOffset", json_object_new_int64((int64_t)i->data_offset));
    json_object_object_add(o, "rawSize", json_object_new_int64((int64_t)i->raw_size));
    json_object_object_add(o, "size", json_object_new_int64((int64_t)i->effective_size));
    for (k = 0; k < i->nslots; k++)
        json_object_array_add(slots, json_object_new_int(i->slots[k]));
    json_object_object_add(o, "keyslots", slots);
    puts(json_object_to_json_string_ext(o, JSON_C_TO_STRING_PRETTY |
                                           JSON_C_TO_STRING_NOSLASHESCAPE));
    json_object_put(o);
}

static void print_info(const char *path, const struct cv_luks_info *i)
{
    char a[64], b[64], c[64];
    int k;

    printf("image:          %s\n", path);
    printf("format:         LUKS%d\n", i->luks_version);
    printf("uuid:           %s\n", i->uuid);
    printf("cipher:         %s (AES-%u, %u-bit XTS key)\n", i->cipher,
           i->key_bits / 2, i->key_bits);
    printf("sector size:    %u\n", i->sector_size);
    printf("data offset:    %s\n",
           cv_format_size_exact(i->data_offset, c, sizeof c));
    printf("raw size:       %s\n",
           cv_format_size_exact(i->raw_size, a, sizeof a));
    printf("effective size: %s\n",
           cv_format_size_exact(i->effective_size, b, sizeof b));
    printf("keyslots:      ");
    for (k = 0; k < i->nslots; k++)
        printf(" %d", i->slots[k]);
    printf("%s\n", i->nslots ? "" : " none");
}

int cmd_image_info(struct cli_args *a)
{
    struct cv_backend *b = NULL, *hb = NULL;
    struct cv_chain *c = NULL;
    struct cv_luks *l = NULL;
    struct cv_luks_info info;
    int json = cli_flag(a, "json"), r;

    /* A volume's chain directory: its header over the head's size. */
    if (cli_is_chain(a->arg[0])) {
        r = cli_chain_open(a->arg[0], &c);
        if (r == 0)
            hb = cv_chain_backend(c);
    } else {
        r = cv_backend_file_open(a->arg[0], 1, &b);
        hb = b;
    }
    if (r == 0)
        r = cv_luks_load(hb, &l);
    if (r == 0)
        r = cv_luks_info(l, &info);
    if (r == 0) {
        if (json)
            print_info_json(a->arg[0], &info);
        else
            print_info(a->arg[0], &info);
    }
    cv_luks_free(l);
    cv_chain_close(c);
    cv_backend_close(b);
    return r < 0 ? cli_fail(r) : EXIT_OK;
}

static int do_resize(struct cv_backend *b, const struct cv_secret *pass,
                     uint64_t size, int allow_shrink)
{
    struct cv_luks *l = NULL;
    struct cv_luks_info info;
    unsigned char *key = NULL;
    char want[64], now[64];
    size_t keylen = 0;
    int r;

    r = cv_luks_load(b, &l);
    if (r == 0)
        r = cv_luks_unlock(l, pass->data, pass->len, &key, &keylen);
    cv_secmem_free(key, keylen);
    if (r >= 0)
        r = cv_luks_info(l, &info);
    if (r < 0)
        goto out;
    cv_format_size_exact(size, want, sizeof want);
    cv_format_size_exact(info.effective_size, now, sizeof now);
    if (size % info.sector_size) {
        r = cv_error(-EINVAL, "%s: size %s is not a multiple of the %u-byte "
                     "sector size", b->name, want, info.sector_size);
        goto out;
    }
    if (size < info.effective_size && !allow_shrink) {
        r = cv_error(-EINVAL, "%s: shrinking from %s to %s destroys the data "
                     "at the end (use --allow-shrink)", b->name, now, want);
        goto out;
    }
    r = cv_backend_resize(b, info.data_offset + size);
    if (r == 0)
        r = cv_backend_flush(b);
out:
    cv_luks_free(l);
    return r < 0 ? r : 0;
}

int cmd_image_resize(struct cli_args *a)
{
    const char *passfile = cli_value(a, "passphrase-file");
    struct cv_backend *b = NULL;
    struct cv_secret pass = { 0 };
    uint64_t size = 0;
    int r;

    if (cli_size_value(a, "size", 512, FILE_MAX, &size))
        return EXIT_USAGE;
    r = cli_read_passphrase(passfile, "passphrase file", &pass);
    if (r == 0)
        r = cv_backend_file_open(a->arg[0], 0, &b);
    if (r == 0)
        r = do_resize(b, &pass, size, cli_flag(a, "allow-shrink"));
    cv_backend_close(b);
    cv_secret_free(&pass);
    return r < 0 ? cli_fail(r) : EXIT_OK;
}
