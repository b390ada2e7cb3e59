/*
 * tests/c/canary.c: a deliberately faulty program for `make canary`, which
 * proves that the valgrind and asan setups of this Makefile catch faults in
 * memory owned by the (uninstrumented) Rust library: a leaked pr_config and
 * a double pr_forwarding_free. `make canary` passes when both tools FAIL on
 * it. Not part of the harness.
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
        pr_forwarding *f = NULL;
        if (pr_forwarding_new(PR_FORWARDING_KIND_PERMANENT, -1, &f) != PR_STATUS_OK) {
            return 2;
        }
        pr_forwarding_free(f);
        pr_forwarding_free(f); /* double free on purpose */
    }
    puts("canary: done");
    return 0;
}
