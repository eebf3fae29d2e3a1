/* A test's scratch folder: dir, made under $TMPDIR (or /tmp), and paths in
 * it. */
#ifndef P2P_TEST_TMPDIR_H
#define P2P_TEST_TMPDIR_H

#include <stdio.h>
#include <stdlib.h>

static char dir[256];

/* dir = a new folder p2p-TAG-XXXXXX; -1 when it cannot be made. */
static int tmpdir_make(const char *tag)
{
	const char *t = getenv("TMPDIR");
	snprintf(dir, sizeof dir, "%s/p2p-%s-XXXXXX", t ? t : "/tmp", tag);
	return mkdtemp(dir) ? 0 : -1;
}

/* dir/name, in one of four buffers taken in turn, so that a call can use
 * up to four at once. */
static const char *tmp(const char *name)
{
	static char path[4][512];
	static int k;
	k = (k + 1) % 4;
	snprintf(path[k], sizeof path[k], "%s/%s", dir, name);
	return path[k];
}

#endif
