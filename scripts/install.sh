#!/usr/bin/env bash
# Install everything slipstream needs on a fresh Debian machine: system packages when missing
# (HAProxy, PostgreSQL, Redis, git, Node.js for the Node example, Podman for containers), then
# Python packages in .venv.
set -euo pipefail
cd "$(dirname "$0")/.."

need=()
command -v haproxy >/dev/null 2>&1 || need+=(haproxy)
compgen -G "/usr/lib/postgresql/*/bin/initdb" >/dev/null || need+=(postgresql)
command -v redis-server >/dev/null 2>&1 || need+=(redis-server)  # keyvalue entries; creates user redis
command -v git >/dev/null 2>&1 || need+=(git)
command -v node >/dev/null 2>&1 || need+=(nodejs npm)
# Containers (runtime: docker / image): Podman with runc (crun cannot set up cgroup v1 hybrid here),
# and busybox-static for the local base image (no container registry is needed).
command -v podman >/dev/null 2>&1 || need+=(podman)
for pkg in runc fuse-overlayfs slirp4netns uidmap busybox-static; do
  dpkg-query -W -f='${Status}' "$pkg" 2>/dev/null | grep -q "ok installed" || need+=("$pkg")
done
if [ ${#need[@]} -gt 0 ]; then
  echo "-----> Installing system packages: ${need[*]}"
  SUDO=""
  [ "$(id -u)" = 0 ] || SUDO="sudo"
  $SUDO apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq --no-install-recommends "${need[@]}" >/dev/null
fi

if [ ! -x .venv/bin/python ]; then
  echo "-----> Creating .venv"
  python3 -m venv .venv
fi
echo "-----> Installing Python packages"
.venv/bin/pip install -q --disable-pip-version-check -e '.[test]'
