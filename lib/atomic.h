/* Atomic file output: write to a temp file beside the target, fsync, rename.
 * A crash or an error leaves the previous file or none, never half of one. */
#ifndef P2P_ATOMIC_H
#define P2P_ATOMIC_H

#include <stddef.h>
#include <stdio.h>

typedef struct {
	FILE *fp;       /* write here */
	char *path;     /* the target */
	char *tmp;      /* the temp file, ".NAME.tmp.XXXXXX" in the same folder */
} p2p_afile;

int p2p_afile_open(p2p_afile *f, const char *path);
/* Flush, fsync, close and rename into place; on failure remove the temp file. */
int p2p_afile_commit(p2p_afile *f);
/* Give up: close and remove the temp file. Safe on a closed or zeroed p2p_afile. */
void p2p_afile_abort(p2p_afile *f);
/* The whole buffer, atomically. */
int p2p_write_file(const char *path, const void *buf, size_t n);
/* Read a whole file ("-" = stdin) into a malloc'd buffer, at most max bytes
 * (an error, not a truncation, when larger). */
int p2p_read_file(const char *path, size_t max, void **buf, size_t *n);
/* Remove the temp files that writers killed mid-write left in dir
 * (".NAME.tmp.XXXXXX"); a missing folder is fine. Returns how many went. */
int p2p_afile_sweep(const char *dir);
/* mkdir -p */
int p2p_mkdirs(const char *dir);

#endif
