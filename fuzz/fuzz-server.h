/* The real NBD server of cryptvold for the fuzzers: nbd_handshake() and
 * nbd_transmit() (daemon/nbd/) serving one connection per input, over a
 * socketpair whose client side is fed the input and drained of replies.
 * TLS is off; the exports are layer chains in a scratch directory,
 * recorded in a SQLite store there, as the daemon records its volumes. */
#ifndef CRYPTVOL_FUZZ_SERVER_H
#define CRYPTVOL_FUZZ_SERVER_H

#include <stddef.h>
#include <stdint.h>

/* The exports, by index (fuzz/seeds.py knows them too). */
enum fuzz_export {
    FUZZ_VOL,           /* "vol": plaintext, 1 MiB */
    FUZZ_ODD,           /* "odd": plaintext, 1 MiB + 1000 bytes */
    FUZZ_ENC,           /* "enc": LUKS2, AES-XTS, 4096-byte sectors, 1 MiB */
    FUZZ_NEXPORTS
};

/* The export's name. */
const char *fuzz_export_name(enum fuzz_export e);
/* The size the server gives clients for it (starts the server). */
uint64_t fuzz_export_size(enum fuzz_export e);

/* Serves one connection: the server sends its greeting and reads what the
 * client sends, which is prefix then data, then end of file; everything the
 * server writes is read and dropped.  Returns when the server has closed
 * the connection.  The first call starts the server (aborts if it cannot:
 * the fuzzer would test nothing). */
void fuzz_server_run(const uint8_t *prefix, size_t plen, const uint8_t *data,
                     size_t size);

#endif
