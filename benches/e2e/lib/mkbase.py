#!/usr/bin/env python3
"""Write a deterministic OCI image layout for a benchmark base image.

Usage:
    mkbase.py busybox  OUT_LAYOUT_DIR [--busybox /bin/busybox]
    mkbase.py bigbase  OUT_LAYOUT_DIR [--busybox /bin/busybox]
                       [--files 60000] [--bytes 1073741824] [--seed 7]

`busybox` is one layer: /bin/busybox, a symlink per applet (from
`busybox --list-full`), /etc/passwd, /etc/group, /tmp, /root.
`bigbase` is that layer plus a second one of FILES files totalling BYTES
bytes under /opt/big, generated from SEED (same seed -> same digests).
File contents are hex text, so gzip shrinks them about 2x, like the
contents of real base images.

The layout is written into a temp dir and renamed into place at the end,
so an interrupted run never leaves a layout that looks complete.
Only the Python standard library is used.
"""

import argparse
import gzip
import hashlib
import io
import json
import os
import platform
import random
import shutil
import subprocess
import sys
import tarfile
import tempfile

# Fixed metadata so that the same inputs give the same digests.
EPOCH = 1_700_000_000
GZIP_LEVEL = 1  # bench inputs, not shipped images: favour generation speed


class HashingWriter:
    """A write-only file object that hashes and counts what passes through."""

    def __init__(self, inner):
        self.inner = inner
        self.sha = hashlib.sha256()
        self.size = 0

    def write(self, data):
        self.sha.update(data)
        self.size += len(data)
        if self.inner is not None:
            self.inner.write(data)
        return len(data)

    def flush(self):
        if self.inner is not None:
            self.inner.flush()


def tar_info(name, kind, mode, size=0, linkname=""):
    info = tarfile.TarInfo(name)
    info.type = kind
    info.mode = mode
    info.size = size
    info.linkname = linkname
    info.mtime = EPOCH
    info.uid = info.gid = 0
    info.uname = info.gname = ""
    return info


class LayerWriter:
    """Streams tar -> (diffID hash) -> gzip -> (digest hash) -> blob file."""

    def __init__(self, blobs_dir):
        self.blobs_dir = blobs_dir
        fd, self.tmp_path = tempfile.mkstemp(dir=blobs_dir, prefix=".layer-")
        self.raw = os.fdopen(fd, "wb")
        self.compressed = HashingWriter(self.raw)
        self.gz = gzip.GzipFile(
            filename="", mode="wb", fileobj=self.compressed,
            compresslevel=GZIP_LEVEL, mtime=0)
        self.uncompressed = HashingWriter(self.gz)
        self.tar = tarfile.open(
            fileobj=self.uncompressed, mode="w|", format=tarfile.PAX_FORMAT)
        self.dirs = set()

    def add_dir(self, path, mode=0o755):
        path = path.strip("/")
        if not path or path in self.dirs:
            return
        parent = os.path.dirname(path)
        if parent:
            self.add_dir(parent)
        self.dirs.add(path)
        self.tar.addfile(tar_info(path + "/", tarfile.DIRTYPE, mode))

    def add_file(self, path, data, mode=0o644):
        path = path.strip("/")
        self.add_dir(os.path.dirname(path))
        self.tar.addfile(tar_info(path, tarfile.REGTYPE, mode, len(data)),
                         io.BytesIO(data))

    def add_symlink(self, path, target):
        path = path.strip("/")
        self.add_dir(os.path.dirname(path))
        self.tar.addfile(tar_info(path, tarfile.SYMTYPE, 0o777, 0, target))

    def finish(self):
        """Closes the streams, moves the blob to its digest name, returns its descriptor."""
        self.tar.close()
        self.gz.close()
        self.raw.close()
        digest = "sha256:" + self.compressed.sha.hexdigest()
        os.rename(self.tmp_path,
                  os.path.join(self.blobs_dir, self.compressed.sha.hexdigest()))
        return {
            "descriptor": {
                "mediaType": "application/vnd.oci.image.layer.v1.tar+gzip",
                "digest": digest,
                "size": self.compressed.size,
            },
            "diff_id": "sha256:" + self.uncompressed.sha.hexdigest(),
        }


def busybox_layer(blobs_dir, busybox):
    with open(busybox, "rb") as f:
        binary = f.read()
    applets = subprocess.run([busybox, "--list-full"], check=True,
                             capture_output=True, text=True).stdout.split()
    layer = LayerWriter(blobs_dir)
    for d in ("bin", "sbin", "usr/bin", "usr/sbin", "etc", "root", "var", "home"):
        layer.add_dir(d)
    layer.add_dir("tmp", 0o1777)
    layer.add_file("bin/busybox", binary, 0o755)
    for applet in sorted(set(applets)):
        if applet != "bin/busybox":
            layer.add_symlink(applet, "/bin/busybox")
    layer.add_file("etc/passwd", b"root:x:0:0:root:/root:/bin/sh\n"
                   b"nobody:x:65534:65534:nobody:/nonexistent:/bin/false\n")
    layer.add_file("etc/group", b"root:x:0:\nnogroup:x:65534:\n")
    return layer.finish()


def big_layer(blobs_dir, files, total_bytes, seed):
    """FILES files of hex text totalling exactly TOTAL_BYTES, spread over 600 dirs."""
    rng = random.Random(seed)
    # Sizes: a skewed spread (many small files, a few big ones) scaled to the total.
    weights = [rng.expovariate(1.0) for _ in range(files)]
    scale = total_bytes / sum(weights)
    sizes = [int(w * scale) for w in weights]
    sizes[0] += total_bytes - sum(sizes)
    layer = LayerWriter(blobs_dir)
    for i, size in enumerate(sizes):
        data = rng.randbytes((size + 1) // 2).hex().encode()[:size]
        layer.add_file(f"opt/big/d{i % 600:03d}/f{i:05d}.txt", data)
    return layer.finish()


def write_json_blob(blobs_dir, obj):
    data = json.dumps(obj, sort_keys=True, separators=(",", ":")).encode()
    hexd = hashlib.sha256(data).hexdigest()
    with open(os.path.join(blobs_dir, hexd), "wb") as f:
        f.write(data)
    return {"digest": "sha256:" + hexd, "size": len(data)}


def oci_arch():
    machine = platform.machine()
    return {"x86_64": "amd64", "aarch64": "arm64"}.get(machine, machine)


def write_layout(out_dir, make_layers):
    parent = os.path.dirname(os.path.abspath(out_dir))
    os.makedirs(parent, exist_ok=True)
    tmp = tempfile.mkdtemp(dir=parent, prefix=".layout-")
    try:
        blobs = os.path.join(tmp, "blobs", "sha256")
        os.makedirs(blobs)
        layers = make_layers(blobs)
        config = {
            "architecture": oci_arch(),
            "os": "linux",
            "created": "2023-11-14T22:13:20Z",
            "config": {
                "Env": ["PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"],
                "Cmd": ["sh"],
            },
            "rootfs": {"type": "layers", "diff_ids": [l["diff_id"] for l in layers]},
            "history": [{"created": "2023-11-14T22:13:20Z", "created_by": "rbuild bench mkbase.py"}
                        for _ in layers],
        }
        config_desc = write_json_blob(blobs, config)
        manifest = {
            "schemaVersion": 2,
            "mediaType": "application/vnd.oci.image.manifest.v1+json",
            "config": {"mediaType": "application/vnd.oci.image.config.v1+json", **config_desc},
            "layers": [l["descriptor"] for l in layers],
        }
        manifest_desc = write_json_blob(blobs, manifest)
        index = {
            "schemaVersion": 2,
            "manifests": [{
                "mediaType": "application/vnd.oci.image.manifest.v1+json",
                **manifest_desc,
                "annotations": {"org.opencontainers.image.ref.name": "latest"},
            }],
        }
        with open(os.path.join(tmp, "oci-layout"), "w") as f:
            json.dump({"imageLayoutVersion": "1.0.0"}, f)
        with open(os.path.join(tmp, "index.json"), "w") as f:
            json.dump(index, f)
        if os.path.exists(out_dir):
            shutil.rmtree(out_dir)
        os.rename(tmp, out_dir)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return manifest_desc["digest"]


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("kind", choices=["busybox", "bigbase"])
    ap.add_argument("out")
    ap.add_argument("--busybox", default="/bin/busybox")
    ap.add_argument("--files", type=int, default=60_000)
    ap.add_argument("--bytes", type=int, default=1 << 30)
    ap.add_argument("--seed", type=int, default=7)
    args = ap.parse_args()
    if not os.access(args.busybox, os.X_OK):
        sys.exit(f"mkbase.py: {args.busybox}: not an executable busybox "
                 "(install the Debian package busybox-static)")
    if args.kind == "busybox":
        make = lambda blobs: [busybox_layer(blobs, args.busybox)]
    else:
        make = lambda blobs: [busybox_layer(blobs, args.busybox),
                              big_layer(blobs, args.files, args.bytes, args.seed)]
    print(write_layout(args.out, make))


if __name__ == "__main__":
    main()
