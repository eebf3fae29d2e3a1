/* Shared by the fuzz harnesses: each harness defines LLVMFuzzerTestOneInput,
 * which libFuzzer drives (make fuzz) and tests/fuzz/replay.c feeds the
 * committed corpora to (make check). A harness aborts on any broken promise
 * of the reader's API, so a wrong answer is found like a crash. */
#ifndef P2P_FUZZ_H
#define P2P_FUZZ_H

#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <unistd.h>

#include "err.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

/* The name the harnesses give their input in messages. */
#define FUZZ_NAME "fuzz-input"

#define FUZZ_ASSERT(cond) do { if (!(cond)) { \
	fprintf(stderr, "%s:%d: broken promise: %s (message: \"%s\")\n", \
	        __FILE__, __LINE__, #cond, p2p_errmsg()); abort(); } } while (0)

/* Forget the pending message, so a failure that leaves none is caught. */
static inline void fuzz_clear_err(void) { p2p_err("%s", ""); }

/* A failed call left one printable line that names the input. */
static inline void fuzz_check_err(const char *name)
{
	const char *m = p2p_errmsg();
	FUZZ_ASSERT(*m && strncmp(m, name, strlen(name)) == 0);
	for (const char *c = m; *c; c++)
		FUZZ_ASSERT((unsigned char)*c >= 0x20 && *c != 0x7f);
}

/* The bytes as a file the path-taking readers can open: an in-memory file
 * under /proc/self/fd. Returns the descriptor (close it after) or -1; path
 * receives its name. */
static inline int fuzz_memfile(const uint8_t *data, size_t size, char *path, size_t cap)
{
	int fd = memfd_create("fuzz", 0);
	if (fd < 0)
		return -1;
	size_t done = 0;
	while (done < size) {
		ssize_t k = write(fd, data + done, size - done);
		if (k <= 0) {
			close(fd);
			return -1;
		}
		done += (size_t)k;
	}
	snprintf(path, cap, "/proc/self/fd/%d", fd);
	return fd;
}

#endif
