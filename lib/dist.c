/* lib/dist.h over MPI (-DP2P_MPI), or one rank without it. */
#include "dist.h"

#include "err.h"

#include <dirent.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

void p2p_dist_share(long n, int rank, int ranks, long *first, long *end)
{
	/* in 64 bits: n * ranks may not fit a 32-bit long */
	*first = (long)((int64_t)n * rank / ranks);
	*end = (long)((int64_t)n * (rank + 1) / ranks);
}

int p2p_dist_bind_gpu(void)
{
	if (p2p_dist_size() == 1)
		return 0;
	/* the devices this rank may choose from: "0,1,..." or the listed ones */
	char list[1024] = "";
	const char *vis = getenv("CUDA_VISIBLE_DEVICES");
	if (vis && *vis) {
		snprintf(list, sizeof list, "%s", vis);
	} else {
		DIR *d = opendir("/proc/driver/nvidia/gpus");
		int n = 0;
		if (d) {
			for (struct dirent *e; (e = readdir(d));)
				n += e->d_name[0] != '.';
			closedir(d);
		}
		for (int i = 0; i < n && strlen(list) + 16 < sizeof list; i++)
			snprintf(list + strlen(list), sizeof list - strlen(list), "%s%d", i ? "," : "", i);
	}
	if (!*list)
		return 0;               /* nothing known: CUDA picks as it would */
	int n = 1;
	for (const char *p = list; *p; p++)
		n += *p == ',';
	int want = p2p_dist_local_rank() % n;
	char *save, *tok = strtok_r(list, ",", &save);
	for (int i = 0; tok && i < want; i++)
		tok = strtok_r(NULL, ",", &save);
	if (!tok || setenv("CUDA_VISIBLE_DEVICES", tok, 1))
		return p2p_err("CUDA_VISIBLE_DEVICES: cannot choose device %d of '%s'", want,
		               vis ? vis : "");
	return 0;
}

#ifdef P2P_MPI

#include <mpi.h>

static int rank_, size_ = 1, local_, live;

/* MPI's message for an error code, as p2p_err. */
static int mpi_fail(const char *what, int code)
{
	char msg[MPI_MAX_ERROR_STRING];
	int len = 0;
	if (MPI_Error_string(code, msg, &len) != MPI_SUCCESS)
		len = 0;
	msg[len] = 0;
	return p2p_err("MPI: %s: %s", what, len ? msg : "failed");
}

int p2p_dist_init(int *argc, char ***argv)
{
	int done = 0, rc;
	MPI_Initialized(&done);
	if (!done && (rc = MPI_Init(argc, argv)) != MPI_SUCCESS)
		return mpi_fail("MPI_Init", rc);
	live = 1;
	/* errors come back to the caller, who says which file or step failed */
	MPI_Comm_set_errhandler(MPI_COMM_WORLD, MPI_ERRORS_RETURN);
	MPI_Comm_rank(MPI_COMM_WORLD, &rank_);
	MPI_Comm_size(MPI_COMM_WORLD, &size_);
	MPI_Comm node;              /* the ranks that share this machine's memory */
	if ((rc = MPI_Comm_split_type(MPI_COMM_WORLD, MPI_COMM_TYPE_SHARED, rank_, MPI_INFO_NULL,
	                              &node)) != MPI_SUCCESS)
		return mpi_fail("MPI_Comm_split_type", rc);
	MPI_Comm_rank(node, &local_);
	MPI_Comm_free(&node);
	return 0;
}

void p2p_dist_finalize(void)
{
	if (!live)
		return;
	/* rank 0 may still be writing a checkpoint: mpirun ends every rank as
	 * soon as one exits with a nonzero status, so no one leaves early */
	MPI_Barrier(MPI_COMM_WORLD);
	MPI_Finalize();
	live = 0;
}

int p2p_dist_rank(void) { return rank_; }
int p2p_dist_size(void) { return size_; }
int p2p_dist_local_rank(void) { return local_; }
const char *p2p_dist_kind(void) { return "MPI"; }

/* MPI counts are ints: big buffers go in pieces. */
#define CHUNK ((size_t)1 << 28)

static int allreduce(void *x, size_t n, size_t elsize, MPI_Datatype type, MPI_Op op)
{
	if (size_ == 1)
		return 0;
	for (size_t at = 0; at < n; at += CHUNK) {
		size_t k = n - at < CHUNK ? n - at : CHUNK;
		int rc = MPI_Allreduce(MPI_IN_PLACE, (char *)x + at * elsize, (int)k, type, op,
		                       MPI_COMM_WORLD);
		if (rc != MPI_SUCCESS)
			return mpi_fail("MPI_Allreduce", rc);
	}
	return 0;
}

int p2p_dist_sum_float(float *x, size_t n)
{
	return allreduce(x, n, sizeof *x, MPI_FLOAT, MPI_SUM);
}

int p2p_dist_sum_double(double *x, size_t n)
{
	return allreduce(x, n, sizeof *x, MPI_DOUBLE, MPI_SUM);
}

int p2p_dist_max_int(int *v)
{
	return allreduce(v, 1, sizeof *v, MPI_INT, MPI_MAX);
}

int p2p_dist_bcast(void *buf, size_t bytes, int root)
{
	if (size_ == 1)
		return 0;
	for (size_t at = 0; at < bytes; at += CHUNK) {
		size_t k = bytes - at < CHUNK ? bytes - at : CHUNK;
		int rc = MPI_Bcast((char *)buf + at, (int)k, MPI_BYTE, root, MPI_COMM_WORLD);
		if (rc != MPI_SUCCESS)
			return mpi_fail("MPI_Bcast", rc);
	}
	return 0;
}

#else   /* one rank */

int p2p_dist_init(int *argc, char ***argv) { return 0; }
void p2p_dist_finalize(void) {}
int p2p_dist_rank(void) { return 0; }
int p2p_dist_size(void) { return 1; }
int p2p_dist_local_rank(void) { return 0; }
const char *p2p_dist_kind(void) { return "single process"; }
int p2p_dist_sum_float(float *x, size_t n) { return 0; }
int p2p_dist_sum_double(double *x, size_t n) { return 0; }
int p2p_dist_max_int(int *v) { return 0; }
int p2p_dist_bcast(void *buf, size_t bytes, int root) { return 0; }

#endif
