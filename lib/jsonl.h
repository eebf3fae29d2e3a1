/* JSON Lines through cJSON: one object per line. Bad lines are reported with
 * their line number ("FILE:LINE: what is wrong") and the reader can go on. */
#ifndef P2P_JSONL_H
#define P2P_JSONL_H

#include <stdio.h>
#include <cjson/cJSON.h>

typedef struct {
	FILE *fp;
	char *name;     /* for messages; "stdin" for "-" */
	long line;      /* number of the line last read */
	char *buf;
	size_t cap;
} p2p_jsonl;

int p2p_jsonl_open(p2p_jsonl *r, const char *path);     /* "-" = stdin */
/* 1: *obj is the next object (caller deletes it); 0: end of input;
 * -1: this line is bad (message set; blank lines are skipped silently). */
int p2p_jsonl_next(p2p_jsonl *r, cJSON **obj);
void p2p_jsonl_close(p2p_jsonl *r);
/* Write obj as one line with '\n'. */
int p2p_jsonl_write(FILE *fp, const cJSON *obj);

/* Field helpers; each sets a message naming the key when it fails.
 * p2p_json_string: a non-empty string. p2p_json_points: an array of [x, y]
 * finite numbers; *xy is malloc'd (2*n floats). p2p_json_numbers: exactly n
 * finite numbers into out. */
const char *p2p_json_string(const cJSON *obj, const char *key);
int p2p_json_points(const cJSON *arr, const char *key, float **xy, int *n);
int p2p_json_numbers(const cJSON *arr, const char *key, double *out, int n);
/* A new [[x,y],...] array. */
cJSON *p2p_json_new_points(const float *xy, int n);

#endif
