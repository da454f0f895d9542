/* The node key: DATA-DIR/node.key, 32 random bytes that seal the secrets
 * this node stores (a software stand-in for a TPM-sealed key).  Made on
 * first start with mode 0600; refused if group or others can read it, as
 * ssh refuses a private key. */
#ifndef CRYPTVOLD_NODEKEY_H
#define CRYPTVOLD_NODEKEY_H

#define CVD_NODEKEY_LEN 32

/* Reads data_dir/node.key, creating it if it does not exist.  *key is
 * CVD_NODEKEY_LEN bytes of locked memory: free with cvd_nodekey_free. */
int cvd_nodekey_load(const char *data_dir, unsigned char **key);
void cvd_nodekey_free(unsigned char *key);

#endif
