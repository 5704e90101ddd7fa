#!/usr/bin/env bash
# Installs Debian's chromium for the dashboard's browser tests
# (collector/web, TestDashboardInBrowser). Idempotent: does nothing when
# chromium is already installed. Needs root.
set -euo pipefail
if command -v chromium >/dev/null 2>&1; then
	exit 0
fi
if [ "$(id -u)" != 0 ]; then
	echo "install-browser: chromium is missing and installing it needs root (sudo $0)" >&2
	exit 1
fi
echo "install-browser: installing Debian's chromium for the dashboard's browser test (about 80 MB to download, 300 MB installed; apt-get install chromium)"
export DEBIAN_FRONTEND=noninteractive
apt-get update -qq
apt-get install -y -qq --no-install-recommends chromium >/dev/null
echo "install-browser: installed $(chromium --version 2>/dev/null | head -1)"
