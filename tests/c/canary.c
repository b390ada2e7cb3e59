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

int main(int argc, char **argv) {
    pr_config *cfg = NULL;
    if (pr_config_new(&cfg) != PR_STATUS_OK) { /* leaked on purpose */
        return 2;
    }
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
