#!/usr/bin/env python3
"""Builds a one-layer OCI image archive from local files, without a registry or a daemon.

    oci-image.py --name tidal.local/tidal:dev --out image.tar \
        --file /host/path:/image/path[:mode] ... [--dir /image/dir] ... \
        [--text /etc/passwd=<content>] [--entrypoint '["/bin/x"]'] [--cmd '[...]'] \
        [--user 65534:65534] [--env K=V] ... [--label k=v] ...

The archive is an OCI image layout (oci-layout, index.json, blobs/sha256/...) in a tar, as
`ctr images import` reads it; the index names the image with the `io.containerd.image.name`
annotation, so the import needs no --base-name. The layer is an uncompressed tar whose entries
are sorted, owned by 0:0 and dated 0, so the same inputs always give the same digest.

Used by scripts/stack.sh (the node's sandbox and test images) and scripts/image.sh (Tidal).
"""
import argparse
import hashlib
import io
import json
import os
import sys
import tarfile


def fail(msg):
    print(f"oci-image: ERROR: {msg}", file=sys.stderr)
    sys.exit(1)


def parse_args():
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--name", required=True, help="full reference, e.g. tidal.local/pause:1")
    p.add_argument("--out", required=True, help="the archive to write")
    p.add_argument("--file", action="append", default=[], help="SRC:DEST[:MODE] (octal mode)")
    p.add_argument("--dir", action="append", default=[], help="an empty directory DEST[:MODE]")
    p.add_argument("--text", action="append", default=[], help="DEST=CONTENT, a small file")
    p.add_argument("--symlink", action="append", default=[], help="DEST=TARGET")
    p.add_argument("--entrypoint", default=None, help="JSON list")
    p.add_argument("--cmd", default=None, help="JSON list")
    p.add_argument("--user", default=None)
    p.add_argument("--env", action="append", default=[])
    p.add_argument("--label", action="append", default=[])
    return p.parse_args()


def add_parents(entries, dest):
    parts = dest.strip("/").split("/")[:-1]
    for i in range(1, len(parts) + 1):
        d = "/".join(parts[:i])
        entries.setdefault(d, ("dir", None, 0o755))


def build_layer(args):
    # path (no leading /) -> (kind, payload, mode)
    entries = {}
    for spec in args.dir:
        dest, _, mode = spec.partition(":")
        add_parents(entries, dest)
        entries[dest.strip("/")] = ("dir", None, int(mode, 8) if mode else 0o755)
    for spec in args.file:
        parts = spec.split(":")
        if len(parts) not in (2, 3):
            fail(f"--file {spec!r}: expected SRC:DEST[:MODE]")
        src, dest = parts[0], parts[1]
        if not os.path.isfile(src):
            fail(f"--file {spec!r}: {src} is not a file")
        mode = int(parts[2], 8) if len(parts) == 3 else (os.stat(src).st_mode & 0o777)
        add_parents(entries, dest)
        entries[dest.strip("/")] = ("file", src, mode)
    for spec in args.text:
        dest, sep, content = spec.partition("=")
        if not sep:
            fail(f"--text {spec!r}: expected DEST=CONTENT")
        add_parents(entries, dest)
        entries[dest.strip("/")] = ("text", content.encode(), 0o644)
    for spec in args.symlink:
        dest, sep, target = spec.partition("=")
        if not sep:
            fail(f"--symlink {spec!r}: expected DEST=TARGET")
        add_parents(entries, dest)
        entries[dest.strip("/")] = ("symlink", target, 0o777)

    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w", format=tarfile.PAX_FORMAT) as tar:
        for path in sorted(entries):
            kind, payload, mode = entries[path]
            info = tarfile.TarInfo(path)
            info.uid = info.gid = 0
            info.uname = info.gname = ""
            info.mtime = 0
            info.mode = mode
            if kind == "dir":
                info.type = tarfile.DIRTYPE
                tar.addfile(info)
            elif kind == "symlink":
                info.type = tarfile.SYMTYPE
                info.linkname = payload
                tar.addfile(info)
            else:
                data = payload if kind == "text" else open(payload, "rb").read()
                info.size = len(data)
                tar.addfile(info, io.BytesIO(data))
    return buf.getvalue()


def blob(blobs, data, media_type):
    digest = "sha256:" + hashlib.sha256(data).hexdigest()
    blobs[digest] = data
    return {"mediaType": media_type, "digest": digest, "size": len(data)}


def canonical(obj):
    return json.dumps(obj, sort_keys=True, separators=(",", ":")).encode()


def main():
    args = parse_args()
    if ":" not in args.name.rsplit("/", 1)[-1]:
        fail(f"--name {args.name!r}: give a tag, e.g. {args.name}:1")
    layer = build_layer(args)
    blobs = {}
    layer_desc = blob(blobs, layer, "application/vnd.oci.image.layer.v1.tar")
    config = {"Env": ["PATH=/usr/local/bin:/usr/bin:/bin"] + args.env, "WorkingDir": "/"}
    if args.entrypoint:
        config["Entrypoint"] = json.loads(args.entrypoint)
    if args.cmd:
        config["Cmd"] = json.loads(args.cmd)
    if args.user:
        config["User"] = args.user
    if args.label:
        config["Labels"] = dict(l.split("=", 1) for l in args.label)
    image_config = {
        "architecture": "amd64",
        "os": "linux",
        "created": "1970-01-01T00:00:00Z",
        "config": config,
        "rootfs": {"type": "layers", "diff_ids": [layer_desc["digest"]]},
        "history": [{"created": "1970-01-01T00:00:00Z", "created_by": "scripts/oci-image.py"}],
    }
    config_desc = blob(blobs, canonical(image_config), "application/vnd.oci.image.config.v1+json")
    manifest = {
        "schemaVersion": 2,
        "mediaType": "application/vnd.oci.image.manifest.v1+json",
        "config": config_desc,
        "layers": [layer_desc],
    }
    manifest_desc = blob(blobs, canonical(manifest), "application/vnd.oci.image.manifest.v1+json")
    manifest_desc["annotations"] = {
        "io.containerd.image.name": args.name,
        "org.opencontainers.image.ref.name": args.name.rsplit(":", 1)[1],
    }
    index = {"schemaVersion": 2, "mediaType": "application/vnd.oci.image.index.v1+json", "manifests": [manifest_desc]}

    tmp = args.out + ".tmp"
    with tarfile.open(tmp, mode="w") as tar:
        def put(name, data):
            info = tarfile.TarInfo(name)
            info.size = len(data)
            info.mode = 0o644
            tar.addfile(info, io.BytesIO(data))

        put("oci-layout", canonical({"imageLayoutVersion": "1.0.0"}))
        put("index.json", canonical(index))
        for digest in sorted(blobs):
            put("blobs/sha256/" + digest.split(":", 1)[1], blobs[digest])
    os.replace(tmp, args.out)
    print(f"{args.name} {manifest_desc['digest']} ({len(layer)} bytes of layer) -> {args.out}")


if __name__ == "__main__":
    main()
