#!/bin/sh
# Runs inside the base root filesystem as the last step of both build paths (offline debootstrap
# and the official node image), so the two produce the same layout.
set -eu
# The unprivileged user that runs package code: uid 1000 like the official node image's `node`.
if ! id -u node >/dev/null 2>&1; then
  groupadd --gid 1000 node
  useradd --uid 1000 --gid node --shell /bin/bash --create-home node
fi
# npm and npx where the official image has them.
if [ ! -e /usr/local/bin/npm ]; then
  ln -s ../lib/node_modules/npm/bin/npm-cli.js /usr/local/bin/npm
  ln -s ../lib/node_modules/npm/bin/npx-cli.js /usr/local/bin/npx
fi
# iptables: the nf_tables backend is what the kernels we run on support.
update-alternatives --set iptables /usr/sbin/iptables-nft >/dev/null 2>&1 || true
update-alternatives --set ip6tables /usr/sbin/ip6tables-nft >/dev/null 2>&1 || true
apt-get clean
rm -rf /var/lib/apt/lists/* /var/cache/apt/*.bin /usr/share/doc/* /usr/share/man/* /usr/share/info/*
node --version >/dev/null
npm --version >/dev/null
