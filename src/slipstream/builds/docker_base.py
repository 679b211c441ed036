"""A local base image without any registry: busybox (Debian's ``busybox-static``) imported as
``localhost/slipstream-base:busybox``.

Why busybox: one static 2 MB binary gives a shell, ``httpd``, ``nc``, ``wget`` and coreutils, the
import takes well under a second, and it needs nothing but the Debian package. A Debian base
(``debootstrap --variant=minbase``, ~40 s and ~200 MB) would carry real runtimes such as Python;
it is left to apps that need one (``RUN apt-get install`` inside ``podman build`` reaches the
Debian archive here).

The root filesystem is assembled in a tarball by Python's ``tarfile`` (busybox plus one symlink per
applet, ``/etc/passwd``, ``/etc/group``, ``/tmp``) and handed to ``podman import``; an image that
is already in storage is reused.
"""

from __future__ import annotations

import io
import shutil
import tarfile
import tempfile
from pathlib import Path

from slipstream.builds.docker_commands import (
    BASE_IMAGE,
    build_image_exists_argv,
    build_import_argv,
    busybox_links,
)
from slipstream.errors import Unavailable
from slipstream.runner import run
from slipstream.runtime.podman_cli import PodmanCli

PASSWD = "root:x:0:0:root:/root:/bin/sh\nnobody:x:65534:65534:nobody:/nonexistent:/bin/false\n"
GROUP = "root:x:0:\nnogroup:x:65534:\n"


def ensure_busybox_base(podman: PodmanCli, ref: str = BASE_IMAGE, *, busybox: str | None = None) -> str:
    """``ref`` in local storage, imported from the host's static busybox when missing; returns ``ref``."""
    if podman.run(build_image_exists_argv(ref), check=False).returncode == 0:
        return ref
    binary = busybox or shutil.which("busybox")
    if binary is None:
        raise Unavailable("busybox is not installed", "run 'make install' (it installs busybox-static)")
    applets = run([binary, "--list-full"], timeout=30).stdout
    with tempfile.TemporaryDirectory(prefix="slipstream-base-") as tmp:
        tarball = Path(tmp) / "rootfs.tar"
        write_rootfs(tarball, Path(binary), busybox_links(applets))
        podman.run(build_import_argv(tarball, ref), timeout=300)
    return ref


def write_rootfs(tarball: Path, binary: Path, links: list[str]) -> None:
    """Write a busybox root filesystem as a tar archive (owned by root, no host metadata)."""
    with tarfile.open(tarball, "w") as tar:
        dirs = {"bin", "sbin", "usr", "usr/bin", "usr/sbin", "etc", "tmp", "root", "www", "proc", "sys", "dev"}
        dirs |= {str(Path(link).parent) for link in links}
        for d in sorted(dirs - {"."}):
            tar.addfile(_info(d, tarfile.DIRTYPE, 0o1777 if d == "tmp" else 0o755))
        with open(binary, "rb") as f:
            data = f.read()
        tar.addfile(_info("bin/busybox", tarfile.REGTYPE, 0o755, len(data)), io.BytesIO(data))
        for link in links:
            info = _info(link, tarfile.SYMTYPE, 0o777)
            info.linkname = "/bin/busybox"
            tar.addfile(info)
        for name, text in (("etc/passwd", PASSWD), ("etc/group", GROUP)):
            raw = text.encode()
            tar.addfile(_info(name, tarfile.REGTYPE, 0o644, len(raw)), io.BytesIO(raw))


def _info(name: str, kind: bytes, mode: int, size: int = 0) -> tarfile.TarInfo:
    info = tarfile.TarInfo(name)
    info.type, info.mode, info.size, info.mtime = kind, mode, size, 0
    return info
