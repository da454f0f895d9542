/* Every command of cryptvol, its arguments and options with their help,
 * and an example: the one table the parser, --help, `cryptvol help
 * --json` and `cryptvol __complete` read (args.h). */
#include "args.h"
#include "cli.h"

#define SIZES "K, M, G, T, P, E (and KiB, MiB, ...) are powers of 1024; " \
              "KB, MB, GB, ... powers of 1000; decimals that come out " \
              "whole bytes are fine (1.5G)"

const struct cli_opt cli_admin_opts[] = {
    { "socket", CLI_VALUE, 0, "PATH", "cryptvold's admin socket (else "
      "$CRYPTVOL_SOCKET, else " CLI_DEFAULT_SOCKET ")" },
    { "url", CLI_VALUE, 0, "https://HOST:PORT", "cryptvold's HTTPS admin "
      "API instead of the socket (needs --tls-dir)" },
    { "tls-dir", CLI_VALUE, 0, "DIR", "ca-cert.pem, client-cert.pem and "
      "client-key.pem (an admin certificate) for --url" },
    { "json", CLI_FLAG, 0, NULL, "print the API's JSON instead of a table" },
    { NULL },
};

const struct cli_opt cli_pbkdf_opts[] = {
    { "pbkdf", CLI_VALUE, 0, "argon2id|argon2i|pbkdf2", "the key derivation "
      "of a new keyslot (default: cryptsetup's, argon2id for LUKS2)" },
    { "pbkdf-iterations", CLI_VALUE, 0, "N", "its iterations (time cost) "
      "instead of a benchmark" },
    { "pbkdf-memory", CLI_VALUE, 0, "KIB", "argon2's memory cost in KiB" },
    { "pbkdf-time-ms", CLI_VALUE, 0, "MS", "the time the benchmark aims "
      "at, in milliseconds" },
    { NULL },
};

#define PASSFILE(req)                                                     \
    { "passphrase-file", CLI_VALUE, (req) | CLI_STDIN, "F", "a file whose " \
      "bytes are a keyslot's passphrase, exactly (no newline stripped; "  \
      "mode 0600); - reads standard input" }

static const struct cli_opt o_image_create[] = {
    { "size", CLI_VALUE, CLI_REQUIRED, "SIZE", "the file's size: " SIZES },
    { NULL },
};
static const struct cli_opt o_image_format[] = {
    PASSFILE(CLI_REQUIRED),
    { "type", CLI_VALUE, 0, "luks2|luks1", "the header format (default "
      "luks2)" },
    { "cipher", CLI_VALUE, 0, "aes-256|aes-128", "AES-XTS with a 512- or "
      "256-bit key (default aes-256)" },
    { "sector-size", CLI_VALUE, 0, "N", "bytes per encryption sector: 512 "
      "to 4096, a power of two (default 4096; LUKS1: 512)" },
    { "force", CLI_FLAG, 0, NULL, "format over an existing LUKS header, "
      "destroying its data" },
    { NULL },
};
static const struct cli_opt o_json[] = {
    { "json", CLI_FLAG, 0, NULL, "print JSON instead of text" },
    { NULL },
};
static const struct cli_opt o_import[] = {
    PASSFILE(CLI_REQUIRED),
    { "offset", CLI_VALUE, 0, "N", "where in the volume to start, in bytes "
      "(sizes as for --size)" },
    { NULL },
};
static const struct cli_opt o_export[] = {
    PASSFILE(0),
    { "kek-escrow", CLI_VALUE, 0, "ESCROW", "instead of a passphrase: a KEK "
      "escrow (cluster kek export) for an image of a cluster with KEK "
      "encryption" },
    { "recovery-passphrase-file", CLI_VALUE, CLI_STDIN, "F", "the escrow's "
      "recovery passphrase, with --kek-escrow" },
    { "offset", CLI_VALUE, 0, "N", "the first byte to export" },
    { "length", CLI_VALUE, 0, "N", "how many bytes (default: to the end)" },
    { NULL },
};
static const struct cli_opt o_image_resize[] = {
    { "size", CLI_VALUE, CLI_REQUIRED, "EFFECTIVE", "the new effective size, "
      "a whole number of sectors: " SIZES },
    PASSFILE(CLI_REQUIRED),
    { "allow-shrink", CLI_FLAG, 0, NULL, "allow a smaller size (the data "
      "past it is lost)" },
    { NULL },
};
static const struct cli_opt o_key_new[] = {
    PASSFILE(CLI_REQUIRED),
    { "new-passphrase-file", CLI_VALUE, CLI_REQUIRED | CLI_STDIN, "G",
      "the new keyslot's passphrase file" },
    { NULL },
};
static const struct cli_opt o_key_remove[] = {
    PASSFILE(CLI_REQUIRED),
    { "force", CLI_FLAG, 0, NULL, "also the last keyslot (the image can "
      "never be opened again)" },
    { NULL },
};
static const struct cli_opt o_secret_value[] = {
    { "from-file", CLI_VALUE, CLI_REQUIRED | CLI_STDIN, "F", "the value: "
      "the file's bytes, exactly (mode 0600); - reads standard input (a "
      "terminal: one line, not echoed)" },
    { NULL },
};
static const struct cli_opt o_none[] = { { NULL } };
static const struct cli_opt o_class_create[] = {
    { "encrypted", CLI_FLAG, 0, NULL, "encrypted volumes; alone: each gets "
      "a generated secret" },
    { "secret", CLI_VALUE, 0, "NAME", "one secret for every volume of the "
      "class" },
    { "secret-template", CLI_VALUE, 0, "T", "one secret per volume, named "
      "by T with ${volume.name} and ${class.name}, e.g. '${volume.name}-key'" },
    { "type", CLI_VALUE, 0, "luks2|luks1", "the header format (default "
      "luks2)" },
    { "cipher", CLI_VALUE, 0, "aes-xts-plain64|aes-256|aes-128", "as "
      "cryptsetup names it (with --key-size) or as aes-256/aes-128" },
    { "key-size", CLI_VALUE, 0, "512|256", "XTS key bits with "
      "aes-xts-plain64 (512: AES-256, the default)" },
    { "replicas", CLI_VALUE, 0, "N", "copies of each volume (more than the "
      "cluster's nodes is refused at volume create)" },
    { NULL },
};
#define ACCESS_OPTS                                                        \
    { "show", CLI_FLAG, 0, NULL, "show the list (also without options)" },  \
    { "allow", CLI_WORDS, 0, "IDENTITY", "allow these identities: "        \
      "cn:NAME dns:NAME cert:NAME (or NAME) psk:IDENTITY uid:N" },          \
    { "deny", CLI_WORDS, 0, "IDENTITY", "refuse these, whatever else "     \
      "allows them" },                                                      \
    { "remove", CLI_WORDS, 0, "IDENTITY", "remove their entries" },        \
    { "clear", CLI_FLAG, 0, NULL, "remove every entry (the class's list or "\
      "the default applies again)" },                                       \
    { NULL }
static const struct cli_opt o_access[] = { ACCESS_OPTS };
static const struct cli_opt o_volume_create[] = {
    { "size", CLI_VALUE, CLI_REQUIRED, "SIZE", "the effective size, a whole "
      "number of sectors (4 KiB for LUKS2, 512 B for LUKS1 and plaintext), "
      "at most 1 EiB: " SIZES },
    { "class", CLI_VALUE, 0, "C", "take type, cipher, secret and encryption "
      "from class C" },
    { "secret", CLI_VALUE, 0, "NAME", "the secret that unlocks it (default: "
      "a generated one named after the volume); one that does not exist yet "
      "leaves the volume Pending until it is created" },
    { "type", CLI_VALUE, 0, "luks2|luks1", "the header format (default "
      "luks2)" },
    { "cipher", CLI_VALUE, 0, "aes-256|aes-128", "AES-XTS with a 512- or "
      "256-bit key (default aes-256)" },
    { "plaintext", CLI_FLAG, 0, NULL, "no encryption at all, for comparison "
      "only" },
    { "replicas", CLI_VALUE, 0, "N", "keep it on N nodes of the cluster (1 to "
      "5; default the class's, or 1), this one first" },
    { "min-replicas", CLI_VALUE, 0, "M", "writes fail unless M replicas are "
      "in sync (default N-1, at least 1)" },
    { NULL },
};
static const struct cli_opt o_volume_replicas[] = {
    { "set", CLI_VALUE, CLI_REQUIRED, "N", "the number of nodes to hold it "
      "(1 to 5): new replicas are rebuilt from the others, removed ones go "
      "first from those not in sync" },
    { "min", CLI_VALUE, 0, "M", "writes fail unless M replicas are in sync "
      "(default: the set's, at most N-1)" },
    { NULL },
};
static const struct cli_opt o_volume_resize[] = {
    { "size", CLI_VALUE, CLI_REQUIRED, "SIZE", "the new effective size, a "
      "whole number of sectors: " SIZES },
    { "allow-shrink", CLI_FLAG, 0, NULL, "allow a smaller size (the data "
      "past it is lost)" },
    { NULL },
};
static const struct cli_opt o_rekey[] = {
    { "secret", CLI_VALUE, CLI_REQUIRED, "NEW", "the secret that unlocks "
      "the volume from now on" },
    { NULL },
};
static const struct cli_opt o_enable[] = {
    { "kek-protection", CLI_VALUE, 0, "tpm|software", "what seals the KEK "
      "at rest: the TPM named by cryptvold's tpm-tcti, or its node key "
      "(default software)" },
    { NULL },
};
static const struct cli_opt o_node_add[] = {
    { "address", CLI_VALUE, CLI_REQUIRED, "HOST:PORT", "the node's peer "
      "port, as the other members reach it (its peer-listen)" },
    { NULL },
};
static const struct cli_opt o_rotate[] = {
    { "no-wait", CLI_FLAG, 0, NULL, "return once the rotation has started "
      "(cluster info shows its progress)" },
    { NULL },
};
static const struct cli_opt o_kek_export[] = {
    { "recovery-passphrase-file", CLI_VALUE, CLI_REQUIRED | CLI_STDIN, "F",
      "the passphrase that opens the escrow (at least 16 bytes)" },
    { NULL },
};
static const struct cli_opt o_migrate[] = {
    { "to-etcd", CLI_FLAG, 0, NULL, "move the metadata into etcd "
      "(the one migration there is)" },
    { "data-dir", CLI_VALUE, CLI_REQUIRED, "DIR", "the stopped node's data "
      "directory" },
    { "etcd-endpoints", CLI_VALUE, CLI_REQUIRED, "URL[,URL...]", "etcd's "
      "client URLs; the prefix there must be empty" },
    { "etcd-tls-dir", CLI_VALUE, 0, "DIR", "etcd client TLS: ca-cert.pem, "
      "client-cert.pem, client-key.pem" },
    { "etcd-prefix", CLI_VALUE, 0, "P", "the cluster's keys start with P "
      "(default /cryptvol/)" },
    { "node-name", CLI_VALUE, CLI_REQUIRED, "NAME", "the node's name in the "
      "cluster: its certificate's, and the one it ran under (its KEKs are "
      "sealed for it)" },
    { "peer-tls-dir", CLI_VALUE, CLI_REQUIRED, "DIR", "the node's "
      "certificate from the cluster CA (tls issue)" },
    { "peer-listen", CLI_VALUE, CLI_REQUIRED, "HOST:PORT", "its peer port, "
      "the address other members reach it on" },
    { "config", CLI_VALUE, 0, "FILE", "read cryptvold's settings (TPM, "
      "KDF...) from FILE first" },
    { NULL },
};
static const struct cli_opt o_audit[] = {
    { "since", CLI_VALUE, 0, "T", "events from T on: epoch seconds, "
      "2026-11-23T10:00:00Z (or with an offset), or an age such as 10m, "
      "2h, 1d" },
    { NULL },
};
static const struct cli_opt o_tls_init[] = {
    { "host", CLI_REPEAT, 0, "NAME", "a name or address for the server "
      "certificate (again for more; default: localhost, 127.0.0.1, ::1)" },
    { "client-cn", CLI_VALUE, 0, "CN", "the client certificate's common "
      "name (default: cryptvol-client)" },
    { NULL },
};

static const struct cli_opt o_tls_issue[] = {
    { "name", CLI_VALUE, CLI_REQUIRED, "NAME", "the node's name: the "
      "certificate's CN and first DNS name (cryptvold's --node-name)" },
    { "host", CLI_REPEAT, 0, "ADDR", "one more DNS name or IP address for "
      "the subjectAltName, such as the peer port's address (again for "
      "more)" },
    { "force", CLI_FLAG, 0, NULL, "replace the node's files in OUT_DIR "
      "(a renewal: each is swapped whole)" },
    { NULL },
};

static const struct cli_opt o_device_map[] = {
    { "device", CLI_VALUE, 0, "/dev/nbdN", "the NBD device to use (default: "
      "the first free one)" },
    { "server", CLI_VALUE, 0, "HOST[:PORT]", "cryptvold's NBD listener "
      "(default 127.0.0.1:10809; [IPV6]:PORT)" },
    { "unix", CLI_VALUE, 0, "PATH", "cryptvold's NBD unix socket instead "
      "(no TLS: the daemon knows the client by its uid)" },
    { "tls-dir", CLI_VALUE, 0, "DIR", "ca-cert.pem, client-cert.pem and "
      "client-key.pem for the NBD connection (default /etc/cryptvol/tls)" },
    { "tls-hostname", CLI_VALUE, 0, "NAME", "the name the server "
      "certificate must carry (default: the host)" },
    { "no-tls", CLI_FLAG, 0, NULL, "connect without TLS (a daemon with tls "
      "off)" },
    { NULL },
};

static const struct cli_opt o_no_wait[] = {
    { "no-wait", CLI_FLAG, 0, NULL, "return once the daemon has started "
      "the job (volume info shows its progress)" },
    { NULL },
};
static const struct cli_opt o_clone[] = {
    { "secret", CLI_VALUE, 0, "S", "give the clone its own LUKS format "
      "and volume key, unlocked by this secret (default: it shares its "
      "parent's format, key and secret)" },
    { "type", CLI_VALUE, 0, "luks2|luks1", "the header format of the "
      "clone's own format, with --secret" },
    { "class", CLI_VALUE, 0, "C", "its own format as class C says (type, "
      "cipher, secret), instead of --secret" },
    { "replicas", CLI_VALUE, 0, "N", "keep it on N nodes, each holding an "
      "in-sync replica of the parent (default the class's, or the "
      "parent's)" },
    { "min-replicas", CLI_VALUE, 0, "M", "writes fail unless M replicas are "
      "in sync (default the parent's with its count, else N-1)" },
    { NULL },
};
static const struct cli_opt o_volume_import[] = {
    { "secret", CLI_VALUE, CLI_REQUIRED, "S", "the stored secret whose "
      "value opens a keyslot of the image (checked before anything is "
      "made); it unlocks the volume from then on" },
    { "no-wait", CLI_FLAG, 0, NULL, "return once the copy has started (the "
      "volume is Importing until it is done)" },
    { NULL },
};
static const struct cli_opt o_volume_export[] = {
    { "snapshot", CLI_VALUE, 0, "SNAP", "the snapshot VOL@SNAP instead of "
      "the volume as it is now" },
    { "sparse", CLI_FLAG, 0, NULL, "keep unwritten blocks as holes (faster "
      "and smaller, but through dm-crypt they read as noise, not zeros)" },
    { "no-wait", CLI_FLAG, 0, NULL, "return once the daemon has started "
      "the export (volume info shows its progress)" },
    { NULL },
};

static const struct cli_opt o_backup_create[] = {
    { "snapshot", CLI_VALUE, 0, "SNAP", "back up this snapshot of VOL "
      "(default: a new one, named backup-... after the backup, made now "
      "and kept as the base of the next backup)" },
    { "no-wait", CLI_FLAG, 0, NULL, "return once the backup has started "
      "(backup list shows its progress)" },
    { NULL },
};
static const struct cli_opt o_backup_verify[] = {
    { "secret", CLI_VALUE, 0, "S", "the stored secret that opens the "
      "backup's header, to authenticate its manifest (default: the one it "
      "was made with, by name, or the cluster KEK)" },
    { NULL },
};
static const struct cli_opt o_backup_restore[] = {
    { "secret", CLI_VALUE, 0, "S", "the stored secret that opens the "
      "backup's header (checked before anything is written) and unlocks "
      "the new volume (default: the one the backup was made with, by name; "
      "one that does not exist yet leaves the volume Pending)" },
    { "class", CLI_VALUE, 0, "C", "record the new volume in class C" },
    { "no-wait", CLI_FLAG, 0, NULL, "return once the restore has started "
      "(the volume is Restoring until every block is in; volume info shows "
      "its progress)" },
    { NULL },
};

#define ADMIN CLI_SET_ADMIN
#define FILE_ CLI_ARG_FILE
#define VOL CLI_ARG_VOLUME
#define SEC CLI_ARG_SECRET
#define CLS CLI_ARG_CLASS
#define SNAP CLI_ARG_SNAPSHOT
#define BKP CLI_ARG_BACKUP

const struct cli_cmd cli_commands[] = {
    /* --- image: local LUKS files, no daemon ------------------------------ */
    { "image create", "PATH", FILE_, 0, o_image_create, 0,
      "a sparse raw file of SIZE bytes (refuses to overwrite)",
      "Makes a new sparse file of SIZE bytes, mode 0600, for image format.",
      "image create vm.img --size 10G", cmd_image_create },
    { "image format", "PATH", FILE_, 0, o_image_format, CLI_SET_PBKDF,
      "write a LUKS header with one keyslot",
      "Writes a LUKS header with one keyslot for the passphrase in F: "
      "LUKS2, AES-256 (aes-xts-plain64, 512-bit key), 4096-byte sectors by "
      "default.  An image that already holds a LUKS header, even a damaged "
      "one, is refused without --force.",
      "image format vm.img --passphrase-file pass", cmd_image_format },
    { "image info", "PATH", FILE_, 0, o_json, 0,
      "format, UUID, cipher, sizes and keyslots of a LUKS image",
      "Shows what the header says; needs no passphrase.  PATH may be a "
      "volume's chain directory (DATA-DIR/volumes/NAME): its header, and "
      "the volume's size.",
      "image info vm.img", cmd_image_info },
    { "image import", "SRC PATH", FILE_, 1, o_import, 0,
      "plaintext from SRC into the image",
      "Encrypts SRC (- is standard input) into the image PATH from byte "
      "--offset on.  Input that does not fit is refused before anything is "
      "written.",
      "image import disk.raw vm.img --passphrase-file pass",
      cmd_image_import },
    { "image export", "PATH DST", FILE_, 0, o_export, 0,
      "plaintext out of the image to DST",
      "Writes the plaintext of the image PATH to DST (- is standard output; "
      "a new file is mode 0600 and sparse where the data is zero).  The key "
      "is --passphrase-file F, or for offline disaster recovery of a volume "
      "of a cluster with KEK encryption, --kek-escrow ESCROW with "
      "--recovery-passphrase-file F: the escrow holds the KEK generation "
      "that unwraps the image's cryptvol-kek token, which opens its keyslot.  "
      "PATH may be a volume's chain directory (DATA-DIR/volumes/NAME), read "
      "as cryptvold reads it (never written: import refuses one).  "
      "A wrong passphrase or recovery passphrase exits with status 3.",
      "image export vm.img - --passphrase-file pass --length 1M",
      cmd_image_export },
    { "image resize", "PATH", FILE_, 0, o_image_resize, 0,
      "set the effective size",
      "Sets the effective size (the data after the header).  Shrinking "
      "needs --allow-shrink.",
      "image resize vm.img --size 20G --passphrase-file pass",
      cmd_image_resize },
    { "image key add", "PATH", FILE_, 0, o_key_new, CLI_SET_PBKDF,
      "add a keyslot for the passphrase in G",
      "Adds a keyslot for the passphrase in G, opening the image with F.",
      "image key add vm.img --passphrase-file pass --new-passphrase-file pass2",
      cmd_key_add },
    { "image key change", "PATH", FILE_, 0, o_key_new, CLI_SET_PBKDF,
      "replace the keyslot F opens with one for G",
      "Replaces the keyslot the passphrase in F opens with one for G.",
      "image key change vm.img --passphrase-file pass --new-passphrase-file pass2",
      cmd_key_change },
    { "image key remove", "PATH", FILE_, 0, o_key_remove, 0,
      "remove the keyslot F opens",
      "Removes the keyslot the passphrase in F opens; the last one only "
      "with --force.",
      "image key remove vm.img --passphrase-file old-pass", cmd_key_remove },
    /* --- secret, class, volume: through cryptvold ------------------------ */
    { "secret create", "NAME", SEC, 0, o_secret_value, ADMIN,
      "store a secret (sealed with the node key)",
      "Stores the value as secret NAME, sealed with the node key; it is "
      "never shown again.  Volumes Pending for it are made now: the command "
      "says which became Available.",
      "secret create db-key --from-file key", cmd_secret_create },
    { "secret update", "NAME", SEC, 0, o_secret_value, ADMIN,
      "replace a secret's value",
      "Replaces the stored value.  Volumes keep their keyslots: the daemon "
      "checks whether the new value opens the volumes that use the secret "
      "and names those it does not open (their next attach fails with "
      "\"wrong key\"; put the old value back, or rekey them first).",
      "secret update db-key --from-file new-key", cmd_secret_update },
    { "secret list", "", SEC, 0, o_none, ADMIN,
      "secrets and the volumes that use them",
      "Lists the secrets, when each was made, and the volumes that use it or "
      "wait for it.  Values are never shown.",
      "secret list", cmd_secret_list },
    { "secret delete", "NAME", SEC, 0, o_none, ADMIN,
      "delete a secret no volume needs",
      "Deletes secret NAME.  Refused while a volume uses it or waits for "
      "it, and for a secret that does not exist.",
      "secret delete old-key", cmd_secret_delete },
    { "class create", "NAME", CLS, 0, o_class_create, ADMIN,
      "a volume class: type, cipher, where secrets come from",
      "A volume class, as Longhorn's: --secret gives every volume one "
      "secret, --secret-template one per volume; either implies "
      "--encrypted, which alone gives each volume a generated secret; "
      "neither makes plaintext volumes.",
      "class create own --secret-template '${volume.name}-key'",
      cmd_class_create },
    { "class list", "", CLS, 0, o_none, ADMIN, "volume classes",
      "Lists the classes and their settings.", "class list", cmd_class_list },
    { "class info", "NAME", CLS, 0, o_none, ADMIN, "one class's settings",
      "Shows a class's settings and NBD access list.", "class info own",
      cmd_class_info },
    { "class delete", "NAME", CLS, 0, o_none, ADMIN,
      "delete a class no volume uses",
      "Deletes a class; refused while a volume uses it.", "class delete own",
      cmd_class_delete },
    { "class access", "NAME", CLS, 0, o_access, ADMIN,
      "who may open the class's volumes over NBD",
      "Shows or changes the NBD access list of the class's volumes (those "
      "without a list of their own).  Identities follow the option that "
      "says what to do with them.",
      "class access gold --allow cn:tenant-a psk:backup --deny uid:33",
      cmd_class_access },
    { "volume create", "NAME", VOL, 0, o_volume_create, ADMIN | CLI_SET_PBKDF,
      "a new encrypted volume, served over NBD as NAME",
      "Makes a LUKS volume unlocked by the named secret (or the class's), "
      "or by a generated 32-byte secret stored under the volume's name.  If "
      "the secret does not exist yet the volume is Pending: it is not "
      "served, and it is made once the secret is created (the command says "
      "so on stderr).  With --class, type, cipher and secret come from the "
      "class; giving them too is refused.  In a cluster, --replicas N keeps "
      "it on N nodes (this one and the Online ones with the fewest "
      "replicas); more than the Online nodes is refused.",
      "volume create db1 --size 10G --secret db-key", cmd_volume_create },
    { "volume list", "", VOL, 0, o_none, ADMIN,
      "volumes: size, allocated, encryption, state, who is connected",
      "One line per volume: size and the bytes its image holds on disk, "
      "type, cipher, secret, state, and the NBD clients connected to it.",
      "volume list", cmd_volume_list },
    { "volume info", "NAME", VOL, 0, o_none, ADMIN,
      "one volume: header, secret, state, connections",
      "Everything about one volume: sizes, LUKS header, secret (or the "
      "cluster KEK generation), class, state with its reason, its "
      "replicas (node, state, since when, bytes behind, a resync's "
      "progress) with the writer and epoch, its NBD connections (peer, "
      "identity, since when) and access list.",
      "volume info db1", cmd_volume_info },
    { "volume resize", "NAME", VOL, 0, o_volume_resize, ADMIN,
      "new effective size (grows online)",
      "Sets a volume's effective size.  A grow works while the volume is "
      "served: connected clients keep the size they negotiated until they "
      "reconnect, new connections see the new size.  Shrinking needs "
      "--allow-shrink and no client connected (a refusal names them).",
      "volume resize db1 --size 20G", cmd_volume_resize },
    { "volume rekey", "NAME", VOL, 0, o_rekey, ADMIN,
      "move a volume to another secret, online",
      "Adds a keyslot for secret NEW, checks it, removes the old secret's; "
      "no data is rewritten, and it works while the volume is served.  "
      "Refused if the current secret no longer opens the volume.",
      "volume rekey db1 --secret db-key-2026", cmd_volume_rekey },
    { "volume delete", "NAME", VOL, 0, o_none, ADMIN,
      "remove a volume, its image and its generated secret",
      "Removes the image, the record and a generated secret.  Refused while "
      "an NBD client has it open and while clones depend on it (the "
      "refusal names them); a Pending volume can be deleted.",
      "volume delete db1", cmd_volume_delete },
    { "volume replicas", "NAME", VOL, 0, o_volume_replicas, ADMIN,
      "how many nodes of the cluster hold a volume",
      "Sets the number of replicas of volume NAME: new ones are placed on "
      "the Online nodes with the fewest replicas and start Rebuilding (the "
      "repair loop copies the volume to them, volume info shows the "
      "progress); removing takes the replicas not in sync first, never the "
      "writer's, never below the minimum.  A single node has no replicas.",
      "volume replicas db1 --set 3 --min 2", cmd_volume_replicas },
    { "volume access", "NAME", VOL, 0, o_access, ADMIN,
      "who may open the volume over NBD",
      "Shows or changes the volume's NBD access list.  Without a list of "
      "its own a volume takes its class's; without either, cryptvold's "
      "nbd-access-default decides.  Identities follow the option that says "
      "what to do with them.",
      "volume access db1 --allow cn:tenant-a --deny uid:33",
      cmd_volume_access },
    { "volume clone", "VOL@SNAP NEW", SNAP, 0, o_clone, ADMIN,
      "a new volume over a snapshot, sharing its blocks",
      "Makes volume NEW whose blocks are those of snapshot VOL@SNAP until "
      "it writes its own (RBD's layering): it is made at once, whatever "
      "the size.  Alone it inherits the parent's format, key and secret.  "
      "With --secret (or --class) it gets its own LUKS format and volume "
      "key: its writes are encrypted with its own key, and opening it "
      "needs its secret and its parent's (volume info says which) until "
      "volume flatten.  --type luks1 under a LUKS2 parent, and the "
      "reverse, work; the clone keeps the parent's size.  The snapshot "
      "cannot be deleted while a clone depends on it.  A clone of a "
      "replicated volume is replicated as its parent (or --replicas N), "
      "only on nodes that hold an in-sync replica of the parent, and is "
      "made on one of them: fewer such nodes than asked is refused.",
      "volume clone db1@gold db2 --secret db2-key", cmd_volume_clone },
    { "volume flatten", "NAME", VOL, 0, o_no_wait, ADMIN,
      "copy a clone's parent blocks into it: no parent after",
      "Copies every block a clone still reads from its parent snapshot "
      "into the clone, re-encrypted with the clone's key where it has its "
      "own format, while the clone is served.  Shows bytes done of total "
      "on a terminal; interrupting the wait leaves the job running, and "
      "after a daemon restart volume flatten again resumes it.  Afterwards "
      "the clone opens with its own secret alone and its parent snapshot "
      "can be deleted.",
      "volume flatten db2", cmd_volume_flatten },
    { "volume import", "NAME FILE", VOL, 0, o_volume_import, ADMIN,
      "adopt a raw LUKS1/LUKS2 image file as a new volume",
      "Makes volume NAME from FILE, a LUKS1 or LUKS2 image as cryptsetup, "
      "qemu-img or cryptvol image make them, on the daemon's host (a "
      "relative FILE is made absolute here).  The value of the stored "
      "secret S must open one of its keyslots: that is checked before anything is "
      "made.  The data is copied as it is, not re-encrypted; the volume "
      "is Importing until the copy is done (progress on a terminal).  For "
      "plaintext into a volume, see image import.",
      "volume import db3 /srv/images/db3.luks --secret db3-key",
      cmd_volume_import },
    { "volume export", "NAME FILE", VOL, 0, o_volume_export, ADMIN,
      "the volume or a snapshot as one raw LUKS image file",
      "Writes volume NAME (or its snapshot --snapshot SNAP) to FILE on "
      "the daemon's host (a relative FILE is made absolute here; it must "
      "not exist) as one raw LUKS image: cryptsetup open takes it with the "
      "volume's secret and reads the same bytes cryptvol does.  Unwritten "
      "blocks become encrypted zeros, unless --sparse.  A clone with its "
      "own format must be flattened first.  Progress on a terminal.  For "
      "the plaintext, see image export.",
      "volume export db1 /srv/backup/db1.luks --snapshot gold",
      cmd_volume_export },
    /* --- snapshots: VOL@SNAP -------------------------------------------- */
    { "snapshot create", "VOL@SNAP", SNAP, 0, o_none, ADMIN,
      "an instant, crash-consistent snapshot of a volume",
      "Makes snapshot SNAP of volume VOL, also while it is served and "
      "written: every write acknowledged before it is in the snapshot, "
      "none after.  It takes no copy and no time that grows with the "
      "size.  The snapshot is served read-only over NBD as VOL@SNAP.",
      "snapshot create db1@gold", cmd_snapshot_create },
    { "snapshot list", "VOL", VOL, 0, o_none, ADMIN,
      "a volume's snapshots, oldest first, and their clones",
      "One line per snapshot, oldest first: when it was made, the bytes "
      "its layer holds on disk, and the clones made from it.",
      "snapshot list db1", cmd_snapshot_list },
    { "snapshot delete", "VOL@SNAP", SNAP, 0, o_no_wait, ADMIN,
      "delete a snapshot, merging its blocks, online",
      "Removes the snapshot at once from lists and merges its blocks into "
      "the next layer in the daemon, while the volume is served, showing "
      "bytes done of total on a terminal (interrupting the wait leaves "
      "the merge running).  Refused, naming them, while clones depend on "
      "it or while VOL@SNAP is served.",
      "snapshot delete db1@gold", cmd_snapshot_delete },
    { "snapshot rollback", "VOL@SNAP", SNAP, 0, o_none, ADMIN,
      "return a volume to a snapshot (what came after is lost)",
      "Makes the volume read again what it held at the snapshot: every "
      "write made after it is discarded; the snapshot stays.  Refused "
      "while the volume is served (the refusal names the clients) and "
      "while newer snapshots exist (delete them first).",
      "snapshot rollback db1@gold", cmd_snapshot_rollback },
    /* --- backups to the backup target (docs/backup.md) ------------------ */
    { "backup target", "", FILE_, 0, o_none, ADMIN,
      "the backup target: where, how many backups and blocks, free space",
      "Shows the directory cryptvold backs up to (its backup-target), the "
      "backups and blocks it holds (of every volume and of every cluster "
      "that shares it), their bytes, and the free space there.",
      "backup target", cmd_backup_target },
    { "backup create", "VOL", VOL, 0, o_backup_create, ADMIN,
      "an encrypted backup of a volume's snapshot (incremental after the first)",
      "Backs up a snapshot of VOL, a new one named after the backup unless "
      "--snapshot names one, to the backup target, while the volume is "
      "served and written: its LUKS header and ciphertext, never "
      "plaintext.  The first backup of a volume is full; each next one "
      "stores only the blocks written since the previous backup's "
      "snapshot (keep that snapshot: it is the base).  Shows bytes done "
      "of total on a terminal; exits 1 with the reason if the backup "
      "fails (it is then listed Failed).  The backup opens with the "
      "secret the volume has now: keep that secret.",
      "backup create db1", cmd_backup_create },
    { "backup list", "[VOL]", VOL, 0, o_none, ADMIN,
      "backups in the target (of VOL), newest first",
      "One line per backup in the target, also those of other clusters "
      "sharing it: ID, VOLUME, SNAPSHOT, CREATED, SIZE (the volume's "
      "effective size), NEW (bytes of blocks it stored that the target did "
      "not have) and STATE (InProgress with its progress, Completed, or "
      "Failed with why).",
      "backup list db1", cmd_backup_list },
    { "backup verify", "ID", BKP, 0, o_backup_verify, ADMIN,
      "reread every block of a backup and check it and its manifest",
      "Authenticates the backup's manifest with the key of the header it "
      "holds, then rereads every block and checks its size and SHA-256, "
      "printing each problem (a block missing, changed or of another "
      "size, or a manifest changed or not authenticated).  Exits 0 only "
      "when all is well.",
      "backup verify bk-3f2a9c01d4e5b6a7", cmd_backup_verify },
    { "backup restore", "ID NEW", BKP, 0, o_backup_restore, ADMIN,
      "a new volume from a backup (Restoring until every block is in)",
      "Makes volume NEW with the backup's header and exact size, Restoring "
      "(not served) until every block is written and checked, then "
      "Available; shows bytes done of total on a terminal.  It opens with "
      "the secret the volume had when the backup was made, by that name, "
      "or --secret S, whose value must open the backup's header (checked "
      "before anything is written; exit 3 if it does not).  A secret that "
      "does not exist yet leaves NEW Pending until it is created, as volume "
      "create does.  A failed restore leaves no volume.",
      "backup restore bk-3f2a9c01d4e5b6a7 db1-restored", cmd_backup_restore },
    { "backup delete", "ID", BKP, 0, o_none, ADMIN,
      "remove a backup and the blocks no other backup uses",
      "Removes the backup's manifest, then every block no other backup of "
      "the target names, and says how many bytes that freed.  Refused "
      "while a backup, restore or verify (of any cluster sharing the "
      "target) runs.  Its snapshot stays on the volume (snapshot delete).",
      "backup delete bk-3f2a9c01d4e5b6a7", cmd_backup_delete },
    /* --- the cluster, the audit log, the node ---------------------------- */
    { "cluster info", "", FILE_, 0, o_none, ADMIN,
      "encryption state, KEK generations, rotation",
      "encryptionState, kekProtection, the current KEK generation, the "
      "previous ones some volume still needs, and a rotation's progress.",
      "cluster info", cmd_cluster_info },
    { "cluster encryption enable", "", FILE_, 0, o_enable, ADMIN,
      "turn on cluster KEK encryption (no volumes yet)",
      "Makes the first KEK generation; every volume made from then on gets "
      "a cryptvol-kek token.  Only while the cluster has no volumes.",
      "cluster encryption enable --kek-protection tpm",
      cmd_cluster_encryption_enable },
    { "cluster encryption disable", "", FILE_, 0, o_none, ADMIN,
      "refused, saying why",
      "Cluster encryption cannot be turned off; the daemon says why.",
      "cluster encryption disable", cmd_cluster_encryption_disable },
    { "cluster kek rotate", "", FILE_, 0, o_rotate, ADMIN,
      "a new KEK generation, every volume's token re-wrapped",
      "Makes a new KEK generation and re-wraps every volume's token (no "
      "data or keyslot is re-encrypted), showing volumes done of total on "
      "a terminal.  Escrows made before hold no new generation: export a "
      "new one afterwards.",
      "cluster kek rotate", cmd_cluster_kek_rotate },
    { "cluster kek export", "OUT", FILE_, 0, o_kek_export, ADMIN,
      "an escrow of every KEK generation, for offline recovery",
      "Writes an escrow of every KEK generation to OUT (mode 0600, never "
      "over an existing file), sealed under the recovery passphrase, for "
      "image export --kek-escrow OUT --recovery-passphrase-file F.",
      "cluster kek export escrow.json --recovery-passphrase-file recovery",
      cmd_cluster_kek_export },
    { "cluster migrate", "", FILE_, 0, o_migrate, 0,
      "move a single node's metadata into etcd, founding a cluster",
      "Runs cryptvold once on the stopped node's data directory: founds a "
      "cluster on the empty etcd prefix with this node as its first "
      "member, copies every volume (placed on this node), secret "
      "(resealed with the new cluster seal key), class, access list, the "
      "cluster record and the KEK generations (sealed for this node as "
      "they are), then renames meta.db to meta.db.migrated.  Start the "
      "node with the same etcd and peer options afterwards "
      "(docs/cluster.md).  Progress on a terminal.",
      "cluster migrate --to-etcd --data-dir /var/lib/cryptvol "
      "--etcd-endpoints https://10.0.0.5:2379 --etcd-tls-dir /etc/cryptvol/etcd "
      "--node-name n1 --peer-tls-dir /etc/cryptvol/peer "
      "--peer-listen 10.0.0.11:10810",
      cmd_cluster_migrate },
    { "node add", "NAME", FILE_, 0, o_node_add, ADMIN,
      "let a node join the cluster",
      "Records node NAME (its certificate's name, from the cluster CA) as "
      "Joining; when it starts it gets the seal key and the KEKs from an "
      "Online member over the peer port, and is a Member from then on.  A "
      "node that was not added refuses to start.",
      "node add n2 --address 10.0.0.2:7400", cmd_node_add },
    { "node list", "", FILE_, 0, o_none, ADMIN,
      "the cluster's members and whether they are Online",
      "NAME (* this node), ADDRESS, STATE (Joining, Online, Offline, "
      "Removed), LAST SEEN, the KEK generations each holds and the volumes "
      "placed on it; then whether this node reaches etcd.",
      "node list", cmd_node_list },
    { "node remove", "NAME", FILE_, 0, o_none, ADMIN,
      "remove a member (none of its volumes left)",
      "Marks node NAME Removed: its peer connections are refused and it "
      "cannot start again under that name.  Refused while a volume is "
      "placed on it (the refusal names one).",
      "node remove n3", cmd_node_remove },
    { "node stats", "[NAME]", FILE_, 0, o_none, ADMIN,
      "TLS counters of this node or another, as /proc/net/tls_stat",
      "TlsCurrTxSw, TlsCurrRxSw (sessions open), TlsTxSw, TlsRxSw "
      "(sessions since start), TlsDecryptError (records that did not "
      "authenticate) and TlsHandshakeFail, for the NBD, admin HTTPS and "
      "peer port servers apart, the peer port's refusals by reason, then "
      "one row per peer (members by name, refused ones by address).  With "
      "NAME, the daemon asks that member over the peer port.",
      "node stats n2", cmd_node_stats },
    { "node peer-tls", "[MODE]", FILE_, 0, o_none, ADMIN,
      "show or set this node's peer-tls: off, on or require",
      "Without MODE, prints the mode.  off dials the other nodes' peer "
      "ports in plaintext and accepts plaintext and TLS; on dials TLS and "
      "accepts both; require (the default) dials and accepts TLS only.  "
      "Plaintext carries replication's ciphertext only (keys, KEKs and "
      "admin requests need TLS always).  To move a cluster from off to "
      "require: every node to on, then every node to require.  Audited "
      "(peer.tls); lasts until SIGHUP rereads peer-tls from the config "
      "file, or a restart.",
      "node peer-tls require", cmd_node_peer_tls },
    { "audit", "", FILE_, 0, o_audit, ADMIN,
      "the audit log of key events",
      "TIME NODE ACTOR EVENT OBJECT RESULT DETAIL, refusals included, never a "
      "value.",
      "audit --since 2h", cmd_audit },
    { "status", "", FILE_, 0, o_none, ADMIN,
      "the node at a glance",
      "Version, node, data directory, listeners, volumes by state, the "
      "cluster KEK's state and the NBD connections.",
      "status", cmd_status },
    { "device map", "NAME", VOL, 0, o_device_map, 0,
      "a volume as /dev/nbdN (nbd-client, root)",
      "Attaches a volume to a local block device with the kernel's NBD "
      "client (nbd-client), over TLS unless --unix or --no-tls, as rbd "
      "device map -t nbd does; prints the device.  Needs root and the nbd "
      "module.",
      "device map db1 --tls-dir /etc/cryptvol/tls", cmd_device_map },
    { "device unmap", "DEVICE", FILE_, 0, o_none, 0,
      "detach /dev/nbdN (nbd-client -d)",
      "Detaches an NBD device that device map attached.",
      "device unmap /dev/nbd0", cmd_device_unmap },
    { "tls init", "DIR", FILE_, 0, o_tls_init, 0,
      "a demo CA, server and client certificate",
      "Makes a demo CA with a server and a client certificate in DIR, in "
      "the layout nbdkit, qemu, libnbd and cryptvold read (keys mode 0600; "
      "refuses to overwrite).",
      "tls init demo/tls --host node1.example --client-cn tenant-a",
      cmd_tls_init },
    { "tls issue", "CA_DIR OUT_DIR", FILE_, 0, o_tls_issue, 0,
      "a cluster node's certificate from a tls init CA",
      "Makes a key pair and a certificate signed by the CA in CA_DIR "
      "(ca-cert.pem, ca-key.pem, as tls init makes them) and writes them "
      "to OUT_DIR in the same layout: ca-cert.pem, server-cert.pem, "
      "server-key.pem, client-cert.pem, client-key.pem, where server and "
      "client are the same certificate and key, usable for both "
      "(extendedKeyUsage serverAuth, clientAuth), keys mode 0600.  Its "
      "CN is NAME, its subjectAltName DNS:NAME and each --host.  Give "
      "OUT_DIR as the node's --peer-tls-dir.  Refuses to overwrite without "
      "--force, and an OUT_DIR that holds the CA's key.",
      "tls issue demo/ca demo/n2 --name n2 --host 10.0.0.12",
      cmd_tls_issue },
};

const size_t cli_ncommands = sizeof cli_commands / sizeof cli_commands[0];
