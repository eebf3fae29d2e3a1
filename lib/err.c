#include "err.h"

#include <errno.h>
#include <stdio.h>
#include <string.h>

static _Thread_local char msg[1024];

/* Names and values quoted from files may hold newlines or escapes: a message
 * stays one printable line. */
static void one_line(char *s)
{
	for (; *s; s++)
		if ((unsigned char)*s < 0x20 || *s == 0x7f)
			*s = '?';
}

int p2p_err(const char *fmt, ...)
{
	va_list ap;
	va_start(ap, fmt);
	vsnprintf(msg, sizeof msg, fmt, ap);
	va_end(ap);
	one_line(msg);
	return -1;
}

int p2p_err_errno(const char *fmt, ...)
{
	int e = errno;
	va_list ap;
	va_start(ap, fmt);
	int n = vsnprintf(msg, sizeof msg, fmt, ap);
	va_end(ap);
	if (n >= 0 && (size_t)n < sizeof msg)
		snprintf(msg + n, sizeof msg - n, ": %s", strerror(e));
	one_line(msg);
	return -1;
}

const char *p2p_errmsg(void)
{
	return msg;
}
