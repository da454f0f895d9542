/* Readiness and state changes for the service manager: systemd's
 * notification protocol (sd_notify(3)), one datagram of "KEY=VALUE" lines
 * to the unix socket NOTIFY_SOCKET names.  Without NOTIFY_SOCKET (not run
 * by systemd, or not Type=notify) every call does nothing. */
#ifndef CRYPTVOLD_NOTIFY_H
#define CRYPTVOLD_NOTIFY_H

/* Reads NOTIFY_SOCKET and removes it from the environment, so that no
 * child process speaks for us.  Called once at startup, before threads;
 * fails only on a socket name that cannot be a unix socket address. */
int cvd_notify_init(void);

/* Sends the lines, e.g. "READY=1\nSTATUS=serving"; failures are logged
 * (debug) and otherwise ignored: the daemon serves either way. */
void cvd_notify(const char *state);

/* "READY=1" and friends with a STATUS= line for systemctl status. */
void cvd_notify_ready(void);
void cvd_notify_reloading(void);
void cvd_notify_stopping(void);

#endif
