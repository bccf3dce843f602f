#!/bin/sh
# Build the native qscan-queue (ingest/native/qscan_queue.c) with the system compiler.
# Usage: ingest/native/build.sh OUTPUT [EXTRA CFLAGS...]   (CC overrides the compiler)
# The one place its flags are written: `make install` and the tests (qscan/testing/clients.py,
# which adds AddressSanitizer/UBSan for tests/test_clients.py) call this.
#
# Linked as a static PIE (ASLR and RELRO kept): qmail-smtpd starts one client per message and
# the dynamic loader's work was ~0.1 ms of its ~0.6 ms CPU (docs/performance.md). A toolchain
# without a static libc (libc.a), or a sanitizer build, links it dynamically instead.
set -eu
out=$1
shift
src=$(dirname "$0")/qscan_queue.c
build() {
    # shellcheck disable=SC2086
    ${CC:-cc} -std=gnu11 -O2 -D_FORTIFY_SOURCE=2 -fstack-protector-strong -fPIE -Wall -Wextra -Werror \
        "$@" -o "$out.tmp.$$" "$src" -Wl,-z,relro,-z,now
}
case " $* " in
    *" -fsanitize"*) build "$@" -pie ;;
    *) build "$@" -static-pie 2>/dev/null || {
           echo "build.sh: no static libc here; linking qscan-queue dynamically" >&2
           build "$@" -pie
       } ;;
esac
mv -f "$out.tmp.$$" "$out"
