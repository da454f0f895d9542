/* Small pieces shared by volumes.c, secrets.c and volumes-serve.c: names,
 * paths, durable file operations. */
#ifndef CRYPTVOLD_VOLUMES_UTIL_H
#define CRYPTVOLD_VOLUMES_UTIL_H

#include <stddef.h>
#include <stdint.h>

struct cvd;
struct cvd_volume_rec;

/* The largest volume the API takes (1 EiB); a file system may allow less
 * (ext4: 16 TiB), which the file's resize then reports. */
#define CVD_VOLUME_MAX_SIZE (1ull << 60)

/* -EINVAL with a message ("volume \"a/b\": not a valid name ...") unless
 * name is valid; what is "volume" or "secret". */
int cvd_check_name(const char *what, const char *name);
/* DATA-DIR/volumes/NAME: the volume's chain directory (docs/store.md). */
void cvd_volume_path(struct cvd *d, const char *name, char *buf, size_t len);
/* Where v's chain is on this node: v->path on the node it was made on
 * (or a single node), cvd_volume_path on another node of its replica set
 * (each replica keeps it in its own data dir). */
void cvd_volume_local_path(struct cvd *d, const struct cvd_volume_rec *v,
                           char *buf, size_t len);
/* 1 if v was made on this node (or a single node): its record's
 * transient states are this node's to settle, not its other replicas'. */
int cvd_volume_made_here(struct cvd *d, const struct cvd_volume_rec *v);
/* fsync of the directory holding path. */
int cvd_sync_dir_of(const char *path);

/* volumes-store.c: the only code that makes, finds or removes a
 * volume's files; everything else goes through the chain it opens. */
struct cvd_export;
struct cv_backend;
struct cv_chain;
/* Makes v's chain at v->path (its ".creating" name: never over an
 * existing one), making DATA-DIR/volumes if needed: a header of
 * header_room bytes and an empty head for size bytes after it; for a
 * clone, reading through parent.  Removes what it made if it fails. */
struct cv_chain_parent;
int cvd_store_make(struct cvd *d, const struct cvd_volume_rec *v,
                   uint64_t header_room, uint64_t size,
                   const struct cv_chain_parent *parent);
/* The last message without the chain's directory path in it (messages go
 * to clients; the path is the daemon's business).  Returns r. */
int cvd_store_hide_path(int r, const char *path);
/* Removes a chain directory (a ".creating" or ".deleting" one); -ENOENT
 * if there is none. */
int cvd_store_remove(const char *path);
/* The volume's chain as the registry holds it (shared with every
 * connection to it; cvd_export_put_store when done).  unlock: also its
 * keys (merge, flatten, export). */
int cvd_store_get(struct cvd *d, const char *name, int unlock,
                  struct cvd_export **out);
/* The same to read only (its header, its layers: volume info), without
 * opening it for writing when nothing holds it (cvd_export_get_view). */
int cvd_store_get_view(struct cvd *d, const char *name,
                       struct cvd_export **out);
/* Its raw image view (the header at its start), for libcryptsetup. */
struct cv_backend *cvd_store_backend(struct cvd_export *e);
/* Gives the volume offset (its header) + size bytes, and syncs. */
int cvd_store_resize(struct cvd *d, const struct cvd_volume_rec *v,
                     uint64_t offset, uint64_t size);
/* The effective size the chain holds now (whole sectors past the data
 * offset), for recovery. */
int cvd_store_size(struct cvd *d, const struct cvd_volume_rec *v,
                   uint64_t *size);
/* An older data directory's single-file volume (DATA-DIR/volumes/NAME.img)
 * becomes a chain of one layer in place (no data is copied), and its
 * record says so.  0 also when v is already a chain. */
int cvd_store_upgrade(struct cvd *d, struct cvd_volume_rec *v);
/* The bytes the files of the volume at path hold on disk. */
int cvd_store_allocated(const char *path, uint64_t *bytes);
/* Where an image is while it is made (recovery removes it: no record
 * names it) and once its delete is committed (recovery finishes the
 * delete).  Recovery removes only these: a file at a volume's own path is
 * never removed unless its record says it was made and its delete was
 * committed, so a failed step or undo never costs a volume the user kept. */
#define CVD_CREATING_SUFFIX ".creating"
#define CVD_DELETING_SUFFIX ".deleting"
/* path + suffix into buf; -ENAMETOOLONG if it does not fit. */
int cvd_aside_path(const char *path, const char *suffix, char *buf,
                   size_t len);
/* rename(2) (with noreplace: -EEXIST if to exists), then fsync of the
 * directory. */
int cvd_rename_file(const char *from, const char *to, int noreplace);
/* unlink(2), then fsync of the directory, so that a record removed next
 * cannot outlive the file's name after a power cut (which would leave an
 * image nothing removes).  -errno as unlink gives it (-ENOENT: none). */
int cvd_remove_file(const char *path);
/* volumes-space.c: DATA-DIR/space.reserve, kept free for the metadata
 * writes of a delete on a full disk.  Makes it (if not there at full
 * size); an error says why it could not. */
int cvd_space_reserve(struct cvd *d);
/* Before the metadata is opened: releases the reserve if the disk is
 * (nearly) full, so that the daemon can start and delete volumes. */
void cvd_space_at_start(struct cvd *d);
/* volume_update / volume_remove that, failing with -ENOSPC, release the
 * reserve and try once more: for deletes and undos only. */
int cvd_space_volume_update(struct cvd *d, struct cvd_volume_rec *v,
                            const char *expect);
int cvd_space_volume_remove(struct cvd *d, const char *name);
/* Logs how long the keyslot just made through l took to derive its key
 * (whose: "secret NAME", for the message): at info when it was slow
 * enough for someone to be waiting on it, else at debug. */
struct cv_luks;
void cvd_log_keyslot(struct cv_luks *l, const char *volume, int keyslot,
                     const char *whose);

/* fsync of the file and of its directory. */
int cvd_sync_file(const char *path);
/* fsync of the file alone (its name is made durable later, by the
 * rename that publishes it). */
int cvd_sync_data(const char *path);
/* The error for the image of volume name at path that could not be given
 * overhead (its header) + size bytes (err a negative errno): one too large
 * for the file system says so in human units with the largest size it
 * allows (-EFBIG); the path is not shown (it is the daemon's). */
int cvd_size_error(const char *name, uint64_t size, uint64_t overhead,
                   const char *path, int err);
/* -EBUSY: "volume db1: in use by 2 NBD clients (127.0.0.1:40312 CN=alice,
 * unix:pid=9,uid=0); shrinking it needs every client disconnected", naming
 * the clients connected now as the registry knows them. */
int cvd_in_use_error(struct cvd *d, const char *name, const char *doing);
/* The clients connected to volume name now ("127.0.0.1:40312 CN=alice,
 * ..."; at most a few, then "and N more") into buf; returns how many. */
int cvd_volume_clients(struct cvd *d, const char *name, char *buf,
                       size_t len);
/* volumes.c: moves a ready volume to state (a transient one) for a change
 * that needs it unserved, refusing while it is served (doing: "deleting"
 * names the change in the refusal); *from gets the state it left. */
int cvd_volume_claim(struct cvd *d, const char *name, const char *state,
                     const char *doing, struct cvd_volume_rec *v,
                     char *from);
/* Puts v back to state from after a failure err whose message is the last
 * one; if that fails too, says so (the next start puts it back). */
void cvd_volume_put_back(struct cvd *d, struct cvd_volume_rec *v,
                         const char *from, int err);
/* After a failure whose message is first: logs a failed undo step and puts
 * first back as the message, since that is what the caller reports. */
void cvd_undo(const char *first, int undo);
#define CVD_ERROR_MAX 512

/* volumes.c, for the other ways a volume is made (clone, import).
 * cvd_volume_cluster_check: with cluster encryption on every volume is
 * LUKS2 with a KEK token; *kek_gen the generation it gets (0: off).
 * cvd_volume_passphrase: the named secret's value, or fresh random bytes
 * (sealed into *gen for the record, unless kek_gen). cvd_volume_pbkdf:
 * the key derivation a new keyslot gets.  cvd_volume_enroll_kek: gives
 * the header l its cryptvol-kek token. */
struct cvd_volume_req;
struct cvd_secret_rec;
struct cv_secret;
struct cv_pbkdf;
int cvd_volume_cluster_check(struct cvd *d, const struct cvd_volume_req *req,
                             uint32_t *kek_gen);
int cvd_volume_passphrase(struct cvd *d, const struct cvd_volume_req *req,
                          uint32_t kek_gen, struct cv_secret *pass,
                          struct cvd_secret_rec *gen);
void cvd_volume_pbkdf(struct cvd *d, const struct cvd_volume_req *req,
                      struct cv_pbkdf *p);
int cvd_volume_enroll_kek(struct cvd *d, struct cv_luks *l,
                          const struct cv_secret *pass,
                          struct cvd_volume_rec *v);

/* A state as users see it (API, CLI, messages): "Available" for ready,
 * "Pending", "Creating", "Resizing", "Growing", "Deleting", "Rekeying". */
const char *cvd_state_shown(const char *state);
/* 1 for the states in which a volume is served (ready, growing). */
int cvd_state_served(const char *state);
/* Why v is in its state, for users ("waiting for secret \"db-1\""), or
 * "" when there is nothing to say. */
void cvd_state_reason(const struct cvd_volume_rec *v, char *buf, size_t len);
/* -EBUSY with "volume db1: is Pending: waiting for secret \"db-1\"", for
 * a request that needs v Available. */
int cvd_state_error(const struct cvd_volume_rec *v);

#endif
