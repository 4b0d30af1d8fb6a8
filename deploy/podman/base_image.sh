#!/bin/sh
# A stand-in for python:3.11-slim-bookworm built from Debian packages alone, for machines that reach the
# Debian archive but no container registry: debootstrap (minbase) + Debian's Python 3.11 with venv and
# libpython3.11 (PyTriton's Python backend loads it), the host's added CA certificates, trimmed of package caches and documentation, then
# `podman import`ed as IMAGE. Usage: deploy/podman/base_image.sh IMAGE [MIRROR]   (needs root)
set -eu
image=${1:?usage: $0 IMAGE [MIRROR]}
mirror=${2:-http://deb.debian.org/debian}
started=$(date +%s)
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
rootfs=$work/rootfs
debootstrap --variant=minbase \
  --include=python3,python3-venv,python-is-python3,libpython3.11,ca-certificates \
  bookworm "$rootfs" "$mirror" > "$work/debootstrap.log" 2>&1 \
  || { tail -n 30 "$work/debootstrap.log" >&2; exit 1; }
# the CA certificates this machine added to Debian's trust store (a TLS-inspecting proxy's, say), so that
# pip and apt inside the builds verify what the host verifies
if ls /usr/local/share/ca-certificates/*.crt >/dev/null 2>&1; then
  cp /usr/local/share/ca-certificates/*.crt "$rootfs/usr/local/share/ca-certificates/"
  chroot "$rootfs" update-ca-certificates > /dev/null
fi
# what a build or a run never needs: downloaded .debs, package lists, docs, manuals, translations
rm -rf "$rootfs"/var/cache/apt/archives/*.deb "$rootfs"/var/lib/apt/lists/* \
       "$rootfs"/usr/share/doc/* "$rootfs"/usr/share/man/* "$rootfs"/usr/share/info/* \
       "$rootfs"/usr/share/locale/* "$rootfs"/var/log/*
tar -C "$rootfs" --numeric-owner -c . | podman import \
  --change 'ENV LANG=C.UTF-8' \
  --change 'ENV PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin' \
  --change 'CMD ["python3"]' \
  --message "debootstrap --variant=minbase bookworm + python3 (hpe3d deploy/podman/base_image.sh)" \
  - "$image"
echo "built $image in $(( $(date +%s) - started )) s"
