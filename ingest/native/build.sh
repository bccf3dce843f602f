#!/bin/sh
# Build the native qscan-queue (ingest/native/qscan_queue.c) with the system compiler.
# Usage: ingest/native/build.sh OUTPUT [EXTRA CFLAGS...]   (CC overrides the compiler)
# The one place its flags are written: `make install` and the tests (qscan/testing/clients.py,
# which adds AddressSanitizer/UBSan for tests/test_clients.py) call this.
set -eu
out=$1
shift
src=$(dirname "$0")/qscan_queue.c
# shellcheck disable=SC2086
${CC:-cc} -std=gnu11 -O2 -D_FORTIFY_SOURCE=2 -fstack-protector-strong -fPIE -Wall -Wextra -Werror \
    "$@" -o "$out.tmp.$$" "$src" -pie -Wl,-z,relro,-z,now
mv -f "$out.tmp.$$" "$out"
