#!/usr/bin/env bash
# Installs the Debian packages the build needs, only the ones that are missing. Idempotent.
# Used by both README commands and by .ci/run.
set -euo pipefail

packages=(libopenblas-dev libdnnl-dev libopenmpi-dev openmpi-bin libturbojpeg0-dev libjpeg62-turbo-dev libpng-dev libarchive-dev pkg-config)

missing=()
for p in "${packages[@]}"; do
    if ! dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed"; then
        missing+=("$p")
    fi
done

if ((${#missing[@]})); then
    echo "setup: installing ${missing[*]}" >&2
    sudo=""
    if [ "$(id -u)" != 0 ]; then sudo="sudo"; fi
    export DEBIAN_FRONTEND=noninteractive
    $sudo apt-get update -qq
    $sudo apt-get install -y -qq --no-install-recommends "${missing[@]}" >&2
fi

if ! command -v swift >/dev/null 2>&1; then
    echo "setup: no 'swift' on PATH; install Swift 6.x (https://www.swift.org/install/) and rerun" >&2
    exit 1
fi
