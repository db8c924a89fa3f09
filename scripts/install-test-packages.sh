#!/usr/bin/env bash
# The Debian packages the test suite needs, installed only where missing: Chromium for the report's
# browser tests, PostgreSQL for the multi-worker tests, Fashion-MNIST for the data tests.
set -euo pipefail
packages=(chromium postgresql dataset-fashion-mnist)
missing=()
for package in "${packages[@]}"; do
    dpkg -s "$package" >/dev/null 2>&1 || missing+=("$package")
done
[ ${#missing[@]} -eq 0 ] && exit 0
sudo=""
[ "$(id -u)" -ne 0 ] && sudo="sudo"
$sudo apt-get update -qq
DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
