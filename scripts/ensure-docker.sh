#!/usr/bin/env bash
# Makes sure a Docker engine answers, and that the offline image build's tools are present.
# On a Debian machine with only the Docker client (ours), installs Debian's docker.io and starts
# dockerd as root. Does nothing to an engine that already answers (including a remote DOCKER_HOST).
set -euo pipefail

need_apt=()
command -v debootstrap >/dev/null 2>&1 || [ -x /usr/sbin/debootstrap ] || need_apt+=(debootstrap)
if ! docker info >/dev/null 2>&1; then
  command -v dockerd >/dev/null 2>&1 || [ -x /usr/sbin/dockerd ] || need_apt+=(docker.io iptables)
fi
if [ ${#need_apt[@]} -gt 0 ]; then
  if [ "$(id -u)" != 0 ]; then
    echo "ensure-docker: need ${need_apt[*]} but not root; install them or point DOCKER_HOST at an engine" >&2
    exit 3
  fi
  echo "ensure-docker: installing ${need_apt[*]} from Debian's packages" >&2
  apt-get update -qq
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${need_apt[@]}" >/dev/null
fi

if docker info >/dev/null 2>&1; then
  exit 0
fi
if [ -n "${DOCKER_HOST:-}" ]; then
  echo "ensure-docker: DOCKER_HOST=$DOCKER_HOST does not answer" >&2
  exit 3
fi
if [ "$(id -u)" != 0 ]; then
  echo "ensure-docker: no Docker engine answers and starting dockerd needs root" >&2
  exit 3
fi
echo "ensure-docker: starting dockerd" >&2
log=/var/log/phonehome-dockerd.log
PATH="$PATH:/usr/sbin:/sbin" nohup dockerd >"$log" 2>&1 &
for _ in $(seq 1 60); do
  if docker info >/dev/null 2>&1; then
    echo "ensure-docker: dockerd is up" >&2
    exit 0
  fi
  sleep 1
done
echo "ensure-docker: dockerd did not answer within 60 s; its log ($log):" >&2
tail -n 30 "$log" >&2 || true
exit 3
