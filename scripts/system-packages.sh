#!/usr/bin/env bash
# Install a Debian package when none of the programs it provides is found:
#   scripts/system-packages.sh PACKAGE PROGRAM [PROGRAM...]
# A PROGRAM is a command looked up on PATH, or a path (globs allowed) for packages that keep
# their programs off PATH. `make install` calls this once per package. As root with apt-get it
# installs quietly (refreshing the package lists only if the first try fails); otherwise it says
# what is missing and succeeds: the tests that need the package skip, saying why.
set -euo pipefail

if [[ $# -lt 2 ]]; then
    echo "usage: $0 PACKAGE PROGRAM [PROGRAM...]" >&2
    exit 2
fi
package=$1
shift

found() {
    local program file
    for program in "$@"; do
        if [[ $program == */* ]]; then
            for file in $program; do
                [[ -x $file ]] && return 0
            done
        elif command -v "$program" >/dev/null; then
            return 0
        fi
    done
    return 1
}

found "$@" && exit 0
if [[ $(id -u) -ne 0 ]] || ! command -v apt-get >/dev/null; then
    echo "note: the system package '$package' is missing (none of: $*); install it, or run" \
        "\`make install\` as root on Debian/Ubuntu; the tests that need it are skipped" >&2
    exit 0
fi
echo "installing the system package '$package' with apt-get ..." >&2
export DEBIAN_FRONTEND=noninteractive
apt_install() { apt-get install -y -qq --no-install-recommends "$package" >/dev/null; }
apt_install 2>/dev/null || { apt-get update -qq >/dev/null && apt_install; }
if ! found "$@"; then
    echo "error: installed '$package' but still found none of: $*" >&2
    exit 1
fi
