/* image create, format, info, resize: whole-image operations. */
#include "store/backend.h"
#include "cli.h"
#include "core/error.h"
#include "progress.h"
#include "core/secmem.h"
#include "core/size.h"

#include <errno.h>
#include <fcntl.h>
#include <getopt.h>
#include <json-c/json.h>
#include <stdio.h>
#include <string.h>
#include <unistd.h>

int cmd_image_create(int argc, char **argv)
{
    static const struct option opts[] = {
        { "size", required_argument, NULL, 's' },
        { 0 } };
    uint64_t size = 0;
    int have_size = 0, c, fd;

    while ((c = getopt_long(argc, argv, ":", opts, NULL)) != -1) {
        if (c != 's')
            return cli_bad_option("image create", c, argv);
        if (cli_parse_size("image create", "size", optarg, &size))
            return EXIT_USAGE;
        have_size = 1;
    }
    if (argc - optind != 1 || !have_size)
        return cli_usage("image create", "needs PATH and --size SIZE");
    fd = open(argv[optind], O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0600);
    if (fd < 0)
        return cli_fail(cv_error(-errno, "%s: %s%s", argv[optind],
                                 strerror(errno), errno == EEXIST ?
                                 " (refusing to overwrite it)" : ""));
    if (ftruncate(fd, (off_t)size) != 0) {
        int e = errno;
        close(fd);
        unlink(argv[optind]);
        return cli_fail(cv_error(-e, "%s: setting size: %s", argv[optind],
                                 strerror(e)));
    }
    close(fd);
    return EXIT_OK;
}

static int parse_cipher(const char *val, unsigned *bits)
{
    if (!strcmp(val, "aes-256") || !strcmp(val, "aes-xts-plain64"))
        *bits = 256;
    else if (!strcmp(val, "aes-128"))
        *bits = 128;
    else
        return cli_usage("image format", "--cipher: \"%s\" (use aes-256 or "
                         "aes-128)", val);
    return 0;
}

static int parse_type(const char *val, int *version)
{
    if (!strcmp(val, "luks2"))
        *version = 2;
    else if (!strcmp(val, "luks1"))
        *version = 1;
    else
        return cli_usage("image format", "--type: \"%s\" (use luks2 or luks1)",
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

int cmd_image_format(int argc, char **argv)
{
    static const struct option opts[] = {
        { "type", required_argument, NULL, 't' },
        { "passphrase-file", required_argument, NULL, 'p' },
        { "cipher", required_argument, NULL, 'c' },
        { "sector-size", required_argument, NULL, 'S' },
        { "force", no_argument, NULL, 'f' },
        CLI_PBKDF_LONGOPTS,
        { 0 } };
    struct cv_format_params fp = { .luks_version = 2, .key_bits = 256 };
    const char *passfile = NULL;
    struct cv_backend *b = NULL;
    struct cv_secret pass = { 0 };
    struct progress prog;
    int force = 0, c, r;

    while ((c = getopt_long(argc, argv, ":", opts, NULL)) != -1) {
        switch (c) {
        case 't': if (parse_type(optarg, &fp.luks_version)) return EXIT_USAGE; break;
        case 'p': passfile = optarg; break;
        case 'c': if (parse_cipher(optarg, &fp.key_bits)) return EXIT_USAGE; break;
        case 'S':
            if (cli_parse_u32("image format", "sector-size", optarg,
                              &fp.sector_size))
                return EXIT_USAGE;
            break;
        case 'f': force = 1; break;
        default:
            if (c < CLI_PBKDF_OPTS)
                return cli_bad_option("image format", c, argv);
            if (cli_pbkdf_option("image format", c, optarg, &fp.pbkdf))
                return EXIT_USAGE;
        }
    }
    if (argc - optind != 1 || !passfile)
        return cli_usage("image format", "needs PATH and --passphrase-file F");
    if (fp.luks_version == 1 && fp.pbkdf.type && strcmp(fp.pbkdf.type, "pbkdf2"))
        return cli_usage("image format", "LUKS1 supports only --pbkdf pbkdf2");
    r = cli_read_passphrase(passfile, "passphrase file", &pass);
    if (r == 0)
        r = cv_backend_file_open(argv[optind], 0, &b);
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
    json_object_object_add(o, "format", json_object_new_string(
                               i->luks_version == 1 ? "luks1" : "luks2"));
    json_object_object_add(o, "uuid", json_object_new_string(i->uuid));
    json_object_object_add(o, "cipher", json_object_new_string(i->cipher));
    json_object_object_add(o, "key_bits", json_object_new_int(i->key_bits));
    json_object_object_add(o, "sector_size", json_object_new_int(i->sector_size));
    json_object_object_add(o, "data_offset", json_object_new_int64((int64_t)i->data_offset));
    json_object_object_add(o, "raw_size", json_object_new_int64((int64_t)i->raw_size));
    json_object_object_add(o, "effective_size", json_object_new_int64((int64_t)i->effective_size));
    for (k = 0; k < i->nslots; k++)
        json_object_array_add(slots, json_object_new_int(i->slots[k]));
    json_object_object_add(o, "keyslots", slots);
    puts(json_object_to_json_string_ext(o, JSON_C_TO_STRING_PRETTY |
                                           JSON_C_TO_STRING_NOSLASHESCAPE));
    json_object_put(o);
}

static void print_info(const char *path, const struct cv_luks_info *i)
{
    char a[32], b[32];
    int k;

    printf("image:          %s\n", path);
    printf("format:         LUKS%d\n", i->luks_version);
    printf("uuid:           %s\n", i->uuid);
    printf("cipher:         %s (AES-%u, %u-bit XTS key)\n", i->cipher,
           i->key_bits / 2, i->key_bits);
    printf("sector size:    %u\n", i->sector_size);
    printf("data offset:    %llu\n", (unsigned long long)i->data_offset);
    printf("raw size:       %llu (%s)\n", (unsigned long long)i->raw_size,
           cv_format_size(i->raw_size, a, sizeof a));
    printf("effective size: %llu (%s)\n", (unsigned long long)i->effective_size,
           cv_format_size(i->effective_size, b, sizeof b));
    printf("keyslots:      ");
    for (k = 0; k < i->nslots; k++)
        printf(" %d", i->slots[k]);
    printf("%s\n", i->nslots ? "" : " none");
}

int cmd_image_info(int argc, char **argv)
{
    static const struct option opts[] = {
        { "json", no_argument, NULL, 'j' },
        { 0 } };
    struct cv_backend *b = NULL;
    struct cv_luks *l = NULL;
    struct cv_luks_info info;
    int json = 0, c, r;

    while ((c = getopt_long(argc, argv, ":", opts, NULL)) != -1) {
        if (c != 'j')
            return cli_bad_option("image info", c, argv);
        json = 1;
    }
    if (argc - optind != 1)
        return cli_usage("image info", "needs PATH");
    r = cv_backend_file_open(argv[optind], 1, &b);
    if (r == 0)
        r = cv_luks_load(b, &l);
    if (r == 0)
        r = cv_luks_info(l, &info);
    if (r == 0) {
        if (json)
            print_info_json(argv[optind], &info);
        else
            print_info(argv[optind], &info);
    }
    cv_luks_free(l);
    cv_backend_close(b);
    return r < 0 ? cli_fail(r) : EXIT_OK;
}

static int do_resize(struct cv_backend *b, const struct cv_secret *pass,
                     uint64_t size, int allow_shrink)
{
    struct cv_luks *l = NULL;
    struct cv_luks_info info;
    unsigned char *key = NULL;
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
    if (size % info.sector_size) {
        r = cv_error(-EINVAL, "%s: size %llu is not a multiple of the %u-byte "
                     "sector size", b->name, (unsigned long long)size,
                     info.sector_size);
        goto out;
    }
    if (size < info.effective_size && !allow_shrink) {
        r = cv_error(-EINVAL, "%s: shrinking from %llu to %llu bytes destroys "
                     "the data at the end (use --allow-shrink)", b->name,
                     (unsigned long long)info.effective_size,
                     (unsigned long long)size);
        goto out;
    }
    r = cv_backend_resize(b, info.data_offset + size);
    if (r == 0)
        r = cv_backend_flush(b);
out:
    cv_luks_free(l);
    return r < 0 ? r : 0;
}

int cmd_image_resize(int argc, char **argv)
{
    static const struct option opts[] = {
        { "size", required_argument, NULL, 's' },
        { "passphrase-file", required_argument, NULL, 'p' },
        { "allow-shrink", no_argument, NULL, 'a' },
        { 0 } };
    const char *passfile = NULL;
    struct cv_backend *b = NULL;
    struct cv_secret pass = { 0 };
    uint64_t size = 0;
    int have_size = 0, shrink = 0, c, r;

    while ((c = getopt_long(argc, argv, ":", opts, NULL)) != -1) {
        switch (c) {
        case 's':
            if (cli_parse_size("image resize", "size", optarg, &size))
                return EXIT_USAGE;
            have_size = 1;
            break;
        case 'p': passfile = optarg; break;
        case 'a': shrink = 1; break;
        default: return cli_bad_option("image resize", c, argv);
        }
    }
    if (argc - optind != 1 || !have_size || !passfile)
        return cli_usage("image resize", "needs PATH, --size and "
                         "--passphrase-file");
    r = cli_read_passphrase(passfile, "passphrase file", &pass);
    if (r == 0)
        r = cv_backend_file_open(argv[optind], 0, &b);
    if (r == 0)
        r = do_resize(b, &pass, size, shrink);
    cv_backend_close(b);
    cv_secret_free(&pass);
    return r < 0 ? cli_fail(r) : EXIT_OK;
}
