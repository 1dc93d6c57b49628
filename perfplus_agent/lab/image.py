"""The lab's guest image: a Debian kernel, and a busybox initramfs carrying the project's
guest programs (compiled static) and the virtio-net modules the cloud kernel keeps as modules.

Built once and cached under a key made of everything that goes into it, so a change to a guest
program or a kernel upgrade rebuilds it, and nothing else does.
"""

from __future__ import annotations

import hashlib
import os
import shutil
import subprocess
import tempfile
from collections.abc import Callable
from dataclasses import dataclass
from importlib import resources
from pathlib import Path

from perfplus_agent.errors import UsageError
from perfplus_agent.lab import preflight
from perfplus_agent.proc import run

__all__ = ["GuestImage", "build_image", "find_kernel"]

KERNEL_PACKAGE = "linux-image-cloud-amd64"
BUSYBOX = Path("/bin/busybox")
GUEST_PROGRAMS = ("dirtier", "pulse")
NEEDED_MODULES = ("virtio_pci", "virtio_net", "button", "evdev")
GCC_FLAGS = ("-O2", "-static", "-Wall", "-Wextra")


def cache_root() -> Path:
    return Path(os.environ.get("PERFPLUS_CACHE", "/var/cache/perfplus"))


@dataclass(frozen=True)
class GuestImage:
    """Paths QEMU boots: ``-kernel`` and ``-initrd``."""

    kernel: Path
    initrd: Path
    kernel_release: str


def find_kernel() -> tuple[Path, Path]:
    """The guest kernel and its modules directory (``PERFPLUS_GUEST_KERNEL`` overrides)."""
    chosen = os.environ.get("PERFPLUS_GUEST_KERNEL")
    candidates = [Path(chosen)] if chosen else sorted(Path("/boot").glob("vmlinuz-*-cloud-amd64"))
    if not chosen:
        candidates += sorted(Path("/boot").glob("vmlinuz-*"))
    for kernel in reversed(candidates) if not chosen else candidates:
        release = kernel.name.removeprefix("vmlinuz-")
        moddir = Path("/lib/modules") / release
        if kernel.is_file() and (moddir / "modules.dep").is_file():
            return kernel, moddir
    raise UsageError(
        f"no guest kernel with modules found in /boot: install the Debian package {KERNEL_PACKAGE}"
        + (f" (PERFPLUS_GUEST_KERNEL={chosen} has no modules directory)" if chosen else "")
    )


def module_order(moddir: Path, wanted: tuple[str, ...]) -> list[Path]:
    """Module files for ``wanted`` plus their dependencies, each after what it needs."""
    deps: dict[str, list[str]] = {}
    for line in (moddir / "modules.dep").read_text().splitlines():
        path, _, rest = line.partition(":")
        deps[path] = rest.split()
    by_name = {Path(p).name.split(".")[0].replace("-", "_"): p for p in deps}
    order: list[str] = []

    def visit(path: str) -> None:
        for dep in deps.get(path, []):
            visit(dep)
        if path not in order:
            order.append(path)

    for name in wanted:
        if name not in by_name:
            continue  # built into this kernel
        visit(by_name[name])
    return [moddir / p for p in order]


def _guest_sources() -> dict[str, bytes]:
    pkg = resources.files("perfplus_agent.lab") / "guest"
    names = [f"{p}.c" for p in GUEST_PROGRAMS] + ["init"]
    return {n: (pkg / n).read_bytes() for n in names}


def _cache_key(sources: dict[str, bytes], kernel: Path, modules: list[Path]) -> str:
    h = hashlib.sha256()
    for name, data in sorted(sources.items()):
        h.update(name.encode() + b"\0" + hashlib.sha256(data).digest())
    for path in [kernel, BUSYBOX, *modules]:
        st = path.stat()
        h.update(f"{path}:{st.st_size}:{st.st_mtime_ns}".encode())
    return h.hexdigest()[:16]


def build_image(say: Callable[[str], None] | None = None, force: bool = False) -> GuestImage:
    """Return the cached image, building it first when needed (about a second)."""
    preflight.require(preflight.IMAGE_TOOLS)
    if not BUSYBOX.is_file():
        raise UsageError(f"{BUSYBOX} not found: install the Debian package busybox-static")
    kernel, moddir = find_kernel()
    modules = module_order(moddir, NEEDED_MODULES)
    sources = _guest_sources()
    out = cache_root() / "guest" / _cache_key(sources, kernel, modules)
    image = GuestImage(out / "vmlinuz", out / "initramfs.cpio.gz", moddir.name)
    if image.initrd.exists() and not force:
        return image
    if say:
        say(f"building the guest image (kernel {moddir.name}) into {out}")
    out.parent.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(dir=out.parent) as tmp:
        work = Path(tmp)
        _build_into(work, sources, kernel, modules)
        if out.exists():
            shutil.rmtree(out)
        (work / "image").rename(out)
    return image


def _build_into(work: Path, sources: dict[str, bytes], kernel: Path, modules: list[Path]) -> None:
    src, root, image = work / "src", work / "root", work / "image"
    for d in (src, image, root / "bin", root / "etc", root / "lib" / "modules", root / "dev",
              root / "proc", root / "sys", root / "tmp"):
        d.mkdir(parents=True)
    for name, data in sources.items():
        (src / name).write_bytes(data)
    for prog in GUEST_PROGRAMS:
        run(["gcc", *GCC_FLAGS, "-o", str(root / "bin" / prog), str(src / f"{prog}.c")],
            timeout=120)
    shutil.copy2(BUSYBOX, root / "bin" / "busybox")
    shutil.copy2(src / "init", root / "init")
    (root / "init").chmod(0o755)
    for mod in modules:
        shutil.copy2(mod, root / "lib" / "modules" / mod.name)
    (root / "etc" / "modules").write_text("".join(f"{m.name}\n" for m in modules))
    # The kernel opens /dev/console before devtmpfs is mounted.
    os.mknod(root / "dev" / "console", 0o600 | 0o020000, os.makedev(5, 1))
    names = subprocess.run(["find", ".", "-print0"], cwd=root, capture_output=True, check=True,
                           timeout=30).stdout
    cpio = subprocess.run(["cpio", "--null", "-o", "-H", "newc", "--quiet"], cwd=root,
                          input=names, capture_output=True, check=True, timeout=60).stdout
    gz = subprocess.run(["gzip", "-6", "-n"], input=cpio, capture_output=True, check=True,
                        timeout=60).stdout
    (image / "initramfs.cpio.gz").write_bytes(gz)
    shutil.copy2(kernel, image / "vmlinuz")
