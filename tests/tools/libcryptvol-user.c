/* A program built by tests/install.sh against the installed libcryptvol,
 * with nothing but pkg-config's flags, as a user of the library builds:
 *   libcryptvol-user IMAGE PASSFILE
 * makes IMAGE (16 MiB + 1 MiB of data) a LUKS2 volume whose passphrase is
 * PASSFILE's bytes, writes "hello from libcryptvol" at offset 4096 through
 * the AES-XTS data path, and reads it back. */
#include <core/error.h>
#include <core/secret-file.h>
#include <image/volume.h>
#include <luks/luks.h>
#include <store/backend.h>

#include <stdio.h>
#include <string.h>

static const char msg[] = "hello from libcryptvol";

static int run(const char *image, const char *passfile)
{
    struct cv_format_params p = {
        .luks_version = 2, .key_bits = 256,
        .pbkdf = { .type = "pbkdf2", .iterations = 1000 },
    };
    struct cv_backend *b = NULL;
    struct cv_volume *v = NULL;
    struct cv_secret s = { 0 };
    char back[sizeof msg] = "";
    int r = cv_secret_read_file(passfile, "passphrase", &s);

    if (r == 0)
        r = cv_backend_file_open(image, 0, &b);
    if (r == 0)
        r = cv_backend_resize(b, 17u << 20);
    if (r == 0)
        r = cv_luks_format(b, &p, s.data, s.len);
    if (r == 0)
        r = cv_volume_open(b, s.data, s.len, NULL, 0, &v);
    if (r == 0)
        r = cv_volume_write(v, msg, sizeof msg, 4096, 0);
    if (r == 0)
        r = cv_volume_read(v, back, sizeof back, 4096);
    if (r == 0 && memcmp(back, msg, sizeof msg))
        r = cv_error(-5, "read back \"%.*s\"", (int)sizeof back, back);
    cv_volume_close(v);
    cv_backend_close(b);
    cv_secret_free(&s);
    return r;
}

int main(int argc, char **argv)
{
    int r;

    if (argc != 3) {
        fprintf(stderr, "usage: libcryptvol-user IMAGE PASSFILE\n");
        return 2;
    }
    r = run(argv[1], argv[2]);
    if (r < 0) {
        fprintf(stderr, "libcryptvol-user: %s\n", cv_last_error());
        return 1;
    }
    printf("%s\n", msg);
    return 0;
}
