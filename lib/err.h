/* Error reporting. The library never prints or exits: a failing call returns
 * -1 (or NULL) and leaves one message, "PATH: what is wrong", for the program
 * to print. Only cmd/ prints and chooses the exit status. */
#ifndef P2P_ERR_H
#define P2P_ERR_H

#include <stdarg.h>

/* Set the pending message (printf-style); always returns -1. */
int p2p_err(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
/* Same, with strerror(errno) appended as ": reason". */
int p2p_err_errno(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
/* The pending message ("" when none). Per thread. */
const char *p2p_errmsg(void);

#endif
