#!/usr/bin/env bash
# The main job on the bundled example, on a fresh machine without internet:
#   1. installs what is needed and builds rbuild (release);
#   2. starts a throw-away local registry (Debian's docker-registry) on a free loopback port;
#   3. makes a busybox base image with rbuild itself (FROM scratch + a rootfs from the
#      busybox-static package) and pushes it there — no image can be pulled from the internet;
#   4. builds examples/hello (two stages, COPY, RUN in the rootless sandbox) FROM that base,
#      pushes it to two tags, and writes it as an OCI layout too;
#   5. shows what the registry holds (skopeo inspect).
set -euo pipefail
cd "$(dirname "$0")/.."
repo=$(pwd)

bash scripts/install-deps.sh
cargo build --release -p rbuild-cli
rbuild="$repo/target/release/rbuild"

work=$(mktemp -d /tmp/rbuild-demo.XXXXXX)
registry_pid=""
cleanup() {
  [ -n "$registry_pid" ] && kill "$registry_pid" 2>/dev/null || true
  chmod -R u+w "$work" 2>/dev/null || true
  rm -rf "$work"
}
trap cleanup EXIT

port=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')
cat > "$work/registry.yml" <<EOF
version: 0.1
log: {level: warn}
storage: {filesystem: {rootdirectory: $work/registry}}
http: {addr: 127.0.0.1:$port}
EOF
docker-registry serve "$work/registry.yml" > "$work/registry.log" 2>&1 &
registry_pid=$!
for _ in $(seq 50); do curl -sf "http://127.0.0.1:$port/v2/" >/dev/null && break; sleep 0.1; done
registry="127.0.0.1:$port"
echo "== throw-away registry at $registry"

base="$work/base"
mkdir -p "$base/rootfs/bin" "$base/rootfs/etc" "$base/rootfs/root" "$base/rootfs/home/app"
mkdir -m 1777 "$base/rootfs/tmp"
cp /bin/busybox "$base/rootfs/bin/busybox"
for applet in $(/bin/busybox --list); do
  [ "$applet" = busybox ] || ln -sf busybox "$base/rootfs/bin/$applet"
done
printf 'root:x:0:0:root:/root:/bin/sh\napp:x:1000:1000:app:/home/app:/bin/sh\n' > "$base/rootfs/etc/passwd"
printf 'root:x:0:\napp:x:1000:\n' > "$base/rootfs/etc/group"
cat > "$base/Dockerfile" <<'EOF'
FROM scratch
COPY rootfs/ /
ENV PATH=/bin
CMD ["sh"]
EOF
echo "== building the busybox base image with rbuild"
"$rbuild" --context "$base" --destination "$registry/library/busybox:latest" \
  --cache-dir "$work/store" --reproducible

echo "== building examples/hello"
"$rbuild" --context examples/hello \
  --build-arg "BUSYBOX=$registry/library/busybox:latest" \
  --destination "$registry/demo/hello:1.0" --destination "$registry/demo/hello:latest" \
  --oci-layout-path "$work/hello-layout" --digest-file "$work/digest" \
  --cache-dir "$work/store"

echo "== the registry holds"
skopeo inspect --tls-verify=false "docker://$registry/demo/hello:1.0"
echo "== image digest $(cat "$work/digest"); OCI layout written to $work/hello-layout (removed on exit)"
