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
/* Grouped atomic writes, for programs that write many small files: each
 * file goes to its temp file at once, unsynced, and p2p_pending_commit later
 * makes a whole group durable before it renames any of them into place.
 * The guarantee is p2p_write_file's (a file under its final name is whole,
 * even after a crash: no rename is issued before the data it names is on
 * disk); what a group saves is the disk flush that an fsync of each file
 * costs, which on a small file costs more than making it. */
typedef struct {
	char *path;     /* the target */
	char *tmp;      /* its temp file, ".NAME.tmp.XXXXXX" beside it */
	int fd;         /* the temp file, open until committed or aborted */
	char *why;      /* after a commit: NULL, or why this file failed (malloc'd) */
} p2p_pending;

/* Write n bytes of buf to a new temp file for path (thread-safe: p is the
 * caller's). 0, or -1 with the message set and nothing left behind. */
int p2p_pending_write(p2p_pending *p, const char *path, const void *buf, size_t n);
/* Make the count files durable (one syncfs per local disk file system
 * among them, an fsync each elsewhere), then rename each into place.
 * Returns how many failed: those have why set ("PATH: what is wrong"),
 * their temp file removed and their target untouched. Every other field
 * is released; the caller frees why. */
long p2p_pending_commit(p2p_pending *p, long count);
/* Give the count files up: temp files removed, fields released. */
void p2p_pending_abort(p2p_pending *p, long count);
/* Read a whole file ("-" = stdin) into a malloc'd buffer, at most max bytes
 * (an error, not a truncation, when larger). */
int p2p_read_file(const char *path, size_t max, void **buf, size_t *n);
/* Remove the temp files that writers killed mid-write left in dir
 * (".NAME.tmp.XXXXXX"); a missing folder is fine. Returns how many went. */
int p2p_afile_sweep(const char *dir);
/* The same where other writers may be at work in dir (shards of one job):
 * only temp files whose writer is gone (a writer holds a lock on its temp
 * file until it commits or dies) and that are at least 10 seconds old
 * (covering the moment between creating one and locking it). */
int p2p_afile_sweep_orphans(const char *dir);
/* mkdir -p */
int p2p_mkdirs(const char *dir);

#endif
