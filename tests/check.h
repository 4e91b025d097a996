/*
 * Checks shared by the C test programs. A failed CHECK prints the file,
 * line, condition and a message, and is counted in test_failures (atomic:
 * helper threads may check too); the program's main reports the count and
 * exits 1 if it is not zero. Every check keeps going after a failure, so
 * one run shows every broken expectation.
 */
#ifndef TESTS_CHECK_H
#define TESTS_CHECK_H

#include <stdatomic.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>

static atomic_int test_failures;

#define CHECK(cond, ...)                                                          \
	do {                                                                      \
		if (!(cond)) {                                                    \
			fprintf(stderr, "%s:%d: FAIL (%s): ", __FILE__, __LINE__, #cond); \
			fprintf(stderr, __VA_ARGS__);                             \
			fputc('\n', stderr);                                      \
			atomic_fetch_add(&test_failures, 1);                      \
		}                                                                 \
	} while (0)

#define CHECK_U(got, want)                                                        \
	CHECK((uint64_t)(got) == (uint64_t)(want), "got %llu (%#llx), want %llu (%#llx)", \
	      (unsigned long long)(got), (unsigned long long)(got),               \
	      (unsigned long long)(want), (unsigned long long)(want))

#define CHECK_I(got, want)                                                        \
	CHECK((long long)(got) == (long long)(want), "got %lld, want %lld",       \
	      (long long)(got), (long long)(want))

#define CHECK_S(got, want) \
	CHECK(strcmp((got), (want)) == 0, "got \"%s\", want \"%s\"", (got), (want))

#endif
