#!/bin/sh
# bench/install-deps.sh - the Debian packages `make bench` needs beyond
# `scripts/install-deps.sh run` (kamailio, sip-tester, a C compiler):
# python3 (the driver, standard library only) and gnuplot-nox (the PNG chart,
# headless). `bench/install-deps.sh core` (make bench-core): python3 only.
# Installs only what is missing; silent when all is there.
set -eu
case "${1:-}" in
core) PKGS="python3" ;;
*) PKGS="python3 gnuplot-nox" ;;
esac
missing=
for p in $PKGS; do
	case "$(dpkg-query -W -f='${db:Status-Abbrev}' "$p" 2>/dev/null || true)" in
	ii*) ;;
	*) missing="$missing $p" ;;
	esac
done
[ -n "$missing" ] || exit 0
if [ "$(id -u)" -ne 0 ]; then
	echo "bench/install-deps: missing packages:$missing (run as root, or install them)" >&2
	exit 1
fi
echo "bench/install-deps: apt-get install$missing" >&2
export DEBIAN_FRONTEND=noninteractive
apt-get -q update >/dev/null
# shellcheck disable=SC2086
apt-get -q install -y --no-install-recommends $missing >/dev/null
