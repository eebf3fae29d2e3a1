/* A tiny unit-test harness that speaks TAP, so scripts/run-tests can count C
 * tests and Bats tests alike. Each TEST is one counted test; CHECK records a
 * failure with file and line and lets the test go on. */
#ifndef P2P_CHECK_H
#define P2P_CHECK_H

#include <math.h>
#include <stdio.h>
#include <string.h>

static int check_failed_;   /* failures in the current test */
static int check_total_;    /* tests run */
static int check_bad_;      /* tests failed */

#define CHECK(cond) do { if (!(cond)) { check_failed_++; \
	printf("#   %s:%d: CHECK(%s) failed\n", __FILE__, __LINE__, #cond); } } while (0)
#define CHECKF(cond, ...) do { if (!(cond)) { check_failed_++; \
	printf("#   %s:%d: CHECK(%s) failed: ", __FILE__, __LINE__, #cond); \
	printf(__VA_ARGS__); printf("\n"); } } while (0)
/* |a - b| <= tol * max(1, |b|) */
#define CHECK_NEAR(a, b, tol) do { double a_ = (a), b_ = (b); \
	double s_ = fabs(b_) > 1 ? fabs(b_) : 1; \
	CHECKF(fabs(a_ - b_) <= (tol) * s_, "%s = %.9g, %s = %.9g", #a, a_, #b, b_); } while (0)

#define RUN(fn) do { check_failed_ = 0; fn(); check_total_++; \
	if (check_failed_) check_bad_++; \
	printf("%s %d - %s\n", check_failed_ ? "not ok" : "ok", check_total_, #fn); \
	fflush(stdout); } while (0)
#define SKIP(fn, why) do { check_total_++; \
	printf("ok %d - %s # skip %s\n", check_total_, #fn, why); } while (0)
/* End of main: the TAP plan, and the exit status. */
#define CHECK_DONE() (printf("1..%d\n", check_total_), check_bad_ ? 1 : 0)

#endif
