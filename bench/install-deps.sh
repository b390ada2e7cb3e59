#!/bin/sh
# bench/install-deps.sh [core] - what `make bench` (python3, gnuplot-nox) or
# `make bench-core` (python3) needs beyond scripts/install-deps.sh run.
case "${1:-}" in
core) exec "$(dirname "$0")/../scripts/install-deps.sh" bench-core ;;
*) exec "$(dirname "$0")/../scripts/install-deps.sh" bench ;;
esac
