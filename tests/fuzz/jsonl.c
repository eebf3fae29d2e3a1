/* The JSON Lines reader (lib/jsonl.c) and its field helpers on arbitrary
 * bytes: every line is an object, a reported bad line, or skipped as blank;
 * an object written back reads back as the same object. */
#include "fuzz.h"
#include "jsonl.h"

/* What the stages ask of a sample record. */
static void use_record(const cJSON *o)
{
	fuzz_clear_err();
	if (!p2p_json_string(o, "id"))
		FUZZ_ASSERT(*p2p_errmsg());
	float *xy;
	int n;
	if (p2p_json_points(cJSON_GetObjectItemCaseSensitive(o, "points"), "points", &xy, &n) == 0) {
		FUZZ_ASSERT(xy && n >= 1);
		free(xy);
	} else {
		FUZZ_ASSERT(!xy && n == 0 && *p2p_errmsg());
	}
	double box[4];
	if (p2p_json_numbers(cJSON_GetObjectItemCaseSensitive(o, "box"), "box", box, 4) != 0)
		FUZZ_ASSERT(*p2p_errmsg());
}

/* Written with p2p_jsonl_write, the object is one line that reads back as
 * itself: writing what was read gives the same text again. (Compared as
 * text, since cJSON writes 1e999 as null and cJSON_Compare matches repeated
 * keys to the first of their name.) */
static void round_trip(const cJSON *o)
{
	char *text = NULL;
	size_t len = 0;
	FILE *mem = open_memstream(&text, &len);
	FUZZ_ASSERT(mem);
	FUZZ_ASSERT(p2p_jsonl_write(mem, o) == 0);
	FUZZ_ASSERT(fclose(mem) == 0);
	FUZZ_ASSERT(len > 0 && text[len - 1] == '\n' && memchr(text, '\n', len) == text + len - 1);
	p2p_jsonl r = { 0 };
	r.fp = fmemopen(text, len, "r");
	r.name = strdup(FUZZ_NAME);
	FUZZ_ASSERT(r.fp && r.name);
	cJSON *back;
	FUZZ_ASSERT(p2p_jsonl_next(&r, &back) == 1);
	char *again = cJSON_PrintUnformatted(back);
	FUZZ_ASSERT(again && strlen(again) == len - 1 && memcmp(again, text, len - 1) == 0);
	free(again);
	cJSON_Delete(back);
	p2p_jsonl_close(&r);
	free(text);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	if (size == 0)
		return 0;   /* fmemopen wants a buffer; the empty stream is a unit test */
	p2p_jsonl r = { 0 };
	r.fp = fmemopen((void *)data, size, "r");
	r.name = strdup(FUZZ_NAME);
	FUZZ_ASSERT(r.fp && r.name);
	long lines = 0;
	for (int rc;;) {
		cJSON *o;
		fuzz_clear_err();
		rc = p2p_jsonl_next(&r, &o);
		if (rc == 0)
			break;
		FUZZ_ASSERT(r.line > lines);   /* every answer moves on */
		lines = r.line;
		if (rc < 0) {
			FUZZ_ASSERT(!o);
			fuzz_check_err(FUZZ_NAME ":");
			continue;
		}
		FUZZ_ASSERT(rc == 1 && cJSON_IsObject(o));
		use_record(o);
		round_trip(o);
		cJSON_Delete(o);
	}
	FUZZ_ASSERT(r.line <= (long)size + 1);
	p2p_jsonl_close(&r);
	return 0;
}
