#!/usr/bin/env bash
# Prepares the build context of deploy/Dockerfile in OUT_DIR:
#   rootfs/   the image's files, owned by root: rbuild, newuidmap/newgidmap (setuid root)
#             with the shared libraries they load, CA certificates, a user `rbuild` (1000)
#             with a subordinate id range, /tmp;
#   user/     what the user owns (COPY --chown): /home/rbuild/.docker and /workspace;
#   busybox/  busybox-static and its applets (the debug image's shell).
# A dynamically linked rbuild works too: its libraries are copied beside it.
# Usage: deploy/make-context.sh RBUILD_BINARY OUT_DIR   (as root, so owners and setuid stay)
set -euo pipefail
rbuild=${1:?usage: make-context.sh RBUILD_BINARY OUT_DIR}
out=${2:?usage: make-context.sh RBUILD_BINARY OUT_DIR}
[ -x "$rbuild" ] || { echo "make-context.sh: $rbuild is not an executable" >&2; exit 1; }
for tool in /usr/bin/newuidmap /usr/bin/newgidmap /bin/busybox /etc/ssl/certs/ca-certificates.crt; do
  [ -e "$tool" ] || { echo "make-context.sh: $tool missing (apt-get install uidmap busybox-static ca-certificates)" >&2; exit 1; }
done

root="$out/rootfs"
rm -rf "$out"
mkdir -p "$root/usr/local/bin" "$root/usr/bin" "$root/etc/ssl/certs" "$root/home" \
  "$out/user/home/rbuild/.docker" "$out/user/workspace" "$out/busybox"
mkdir -m 1777 "$root/tmp"

# Copies a binary and every shared library it loads (none for a static one), keeping paths.
copy_with_libraries() {
  local binary=$1 dest=$2
  cp -a "$binary" "$dest"
  local libs
  # A static binary makes ldd fail: then there is nothing to copy.
  libs=$(ldd "$binary" 2>/dev/null | grep -o '/[^ ]*' || true)
  for lib in $libs; do
    [ -e "$lib" ] || continue
    mkdir -p "$root$(dirname "$lib")"
    cp -L "$lib" "$root$lib"
  done
}
copy_with_libraries "$rbuild" "$root/usr/local/bin/rbuild"
chmod 0755 "$root/usr/local/bin/rbuild"
copy_with_libraries /usr/bin/newuidmap "$root/usr/bin/newuidmap"
copy_with_libraries /usr/bin/newgidmap "$root/usr/bin/newgidmap"
chown root:root "$root/usr/bin/newuidmap" "$root/usr/bin/newgidmap"
chmod 4755 "$root/usr/bin/newuidmap" "$root/usr/bin/newgidmap"
cp /etc/ssl/certs/ca-certificates.crt "$root/etc/ssl/certs/"

cat > "$root/etc/passwd" <<PASSWD
root:x:0:0:root:/root:/busybox/sh
rbuild:x:1000:1000:rbuild:/home/rbuild:/busybox/sh
PASSWD
printf 'root:x:0:\nrbuild:x:1000:\n' > "$root/etc/group"
echo "rbuild:100000:65536" > "$root/etc/subuid"
echo "rbuild:100000:65536" > "$root/etc/subgid"

cp /bin/busybox "$out/busybox/busybox"
for applet in $(/bin/busybox --list); do
  [ "$applet" = busybox ] || ln -sf busybox "$out/busybox/$applet"
done
