/*
 * Clang thread-safety annotations (checked by `./build.sh tsa`, which builds
 * with -Wthread-safety -Werror). Empty under compilers without the analysis.
 */
#ifndef CORE_THREAD_ANNOT_H
#define CORE_THREAD_ANNOT_H

#if defined(__clang__)
#define TSA(x) __attribute__((x))
#else
#define TSA(x)
#endif

#define CAPABILITY(x) TSA(capability(x))
#define GUARDED_BY(x) TSA(guarded_by(x))
#define PT_GUARDED_BY(x) TSA(pt_guarded_by(x))
#define REQUIRES(...) TSA(requires_capability(__VA_ARGS__))
#define ACQUIRE(...) TSA(acquire_capability(__VA_ARGS__))
#define RELEASE(...) TSA(release_capability(__VA_ARGS__))
#define EXCLUDES(...) TSA(locks_excluded(__VA_ARGS__))
#define ASSERT_CAPABILITY(x) TSA(assert_capability(x))
#define NO_THREAD_SAFETY_ANALYSIS TSA(no_thread_safety_analysis)

#endif
