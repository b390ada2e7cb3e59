/*
 * tests/c/canary.c: a deliberately faulty program for `make canary`, which
 * proves that the valgrind and asan setups of this Makefile catch faults in
 * memory owned by the (uninstrumented) Rust library: a leaked pr_config and,
 * with the argument "double-free", a second pr_config freed twice.
 * `make canary` passes when both tools FAIL on it. Not part of the harness.
 *
 * The double free is of a pr_config because its _free really frees (a
 * pr_decision would not do: pr_decision_free keeps the last freed decision
 * of each thread for the next call, so a second free of it is not a second
 * free() of the same block).
 */
#include <stdio.h>
#include <string.h>

#include "push_redirect.h"

/*
 * LeakSanitizer scans the live stack at exit conservatively: a stale copy
 * of the leaked pointer left by pr_config_new's frame, in the slots the
 * exit path's frames then occupy, made the leak look reachable in some
 * runs (the canary then "missed" it, depending on the stack layout). So the
 * leak is made in its own frame and the stack below it is wiped after.
 */
static __attribute__((noinline)) int leak_one(void) {
    pr_config *cfg = NULL;
    int st = pr_config_new(&cfg); /* leaked on purpose */
    *(pr_config *volatile *)&cfg = NULL;
    return st == PR_STATUS_OK ? 0 : 2;
}

static __attribute__((noinline)) void wipe_stack(void) {
    volatile char buf[64 * 1024];
    memset((char *)buf, 0, sizeof buf);
}

int main(int argc, char **argv) {
    if (leak_one() != 0) {
        return 2;
    }
    wipe_stack();
    if (argc > 1 && strcmp(argv[1], "double-free") == 0) {
        pr_config *twice = NULL;
        if (pr_config_new(&twice) != PR_STATUS_OK) {
            return 2;
        }
        pr_config_free(twice);
        pr_config_free(twice); /* double free on purpose */
    }
    puts("canary: done");
    return 0;
}
