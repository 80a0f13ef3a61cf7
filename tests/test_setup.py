"""Set-up checks: torchvision's native ops work here, and scripts/fix_torchvision.py behaves."""

from __future__ import annotations

import importlib.util
import shutil
import subprocess
import sys
import textwrap
from pathlib import Path
from types import ModuleType

import pytest

ROOT = Path(__file__).resolve().parents[1]
SCRIPT = ROOT / "scripts" / "fix_torchvision.py"


def load_fixer() -> ModuleType:
    spec = importlib.util.spec_from_file_location("fix_torchvision", SCRIPT)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # dataclasses look their module up here
    spec.loader.exec_module(module)
    return module


fixer = load_fixer()
needs_binutils = pytest.mark.skipif(
    not all(shutil.which(tool) for tool in ("gcc", "c++filt")), reason="gcc/binutils not installed"
)


def test_torchvision_nms_keeps_expected_boxes() -> None:
    import torch
    import torchvision

    # IoU(box 3, box 0) = 100/105 and IoU(box 3, box 1) = 85.5/119.5 both exceed 0.5; box 2 is disjoint.
    boxes = torch.tensor([[0, 0, 10, 10], [1, 1, 11, 11], [20, 20, 30, 30], [0, 0, 10, 10.5]], dtype=torch.float32)
    scores = torch.tensor([0.9, 0.8, 0.7, 0.95])
    assert torchvision.ops.nms(boxes, scores, 0.5).tolist() == [3, 2]


def test_fix_torchvision_check_reports_ok() -> None:
    proc = subprocess.run([sys.executable, str(SCRIPT), "--check"], capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert "OK:" in proc.stdout
    assert '"torchvision"' in proc.stdout


def test_parse_dynsyms_reads_kind_binding_and_version() -> None:
    output = textwrap.dedent(
        """
        Symbol table '.dynsym' contains 4 entries:
           Num:    Value          Size Type    Bind   Vis      Ndx Name
             0: 0000000000000000     0 NOTYPE  LOCAL  DEFAULT  UND
             1: 0000000000000000     0 FUNC    GLOBAL DEFAULT  UND _ZN3c104cuda12device_countEv
             2: 0000000000000000     0 FUNC    GLOBAL DEFAULT  UND cudaGetLastError@libcudart.so.13 (4)
             3: 0000000000000000     0 OBJECT  GLOBAL DEFAULT  UND _ZN3c104cuda20CUDACachingAllocator9allocatorE
             4: 00000000000b5c7a    92 FUNC    WEAK   DEFAULT   12 _ZNK3c104cuda4impl13CUDAGuardImpl4typeEv
             5: 0000000000022a10   160 FUNC    GLOBAL DEFAULT   12 __cudaGetProcAddress@@libcudart.so.13
        """
    )
    syms = fixer.parse_dynsyms(output)
    assert [s.name for s in syms] == [
        "_ZN3c104cuda12device_countEv",
        "cudaGetLastError",
        "_ZN3c104cuda20CUDACachingAllocator9allocatorE",
        "_ZNK3c104cuda4impl13CUDAGuardImpl4typeEv",
        "__cudaGetProcAddress",
    ]
    assert [s.defined for s in syms] == [False, False, False, True, True]
    assert [s.version for s in syms] == ["", "libcudart.so.13", "", "", "libcudart.so.13"]
    assert syms[2].kind == "OBJECT" and syms[3].bind == "WEAK"


def test_missing_symbols_skips_versioned_weak_defined_and_provided() -> None:
    sym = fixer.DynSymbol
    symbols = [
        sym("_ZN3c104cuda9GetDeviceEPa", "FUNC", "GLOBAL", False, ""),
        sym("_ZN3c104cuda9GetDeviceEPa", "FUNC", "GLOBAL", False, ""),  # both extensions need it: one stub
        sym("cudaGetLastError", "FUNC", "GLOBAL", False, "libcudart.so.13"),
        sym("__gmon_start__", "NOTYPE", "WEAK", False, ""),
        sym("_ZN3c106detail14torchCheckFailEPKcS2_jS2_", "FUNC", "GLOBAL", False, ""),
        sym("_ZN6vision12cuda_versionEv", "FUNC", "GLOBAL", True, ""),
    ]
    provided = {"_ZN3c106detail14torchCheckFailEPKcS2_jS2_"}
    assert [s.name for s in fixer.missing_symbols(symbols, provided)] == ["_ZN3c104cuda9GetDeviceEPa"]


@needs_binutils
def test_plan_stubs_splits_by_namespace_and_refuses_non_cuda_symbols() -> None:
    sym = fixer.DynSymbol
    plan = fixer.plan_stubs(
        [
            sym("_ZN2at4cuda26getCurrentDevicePropertiesEv", "FUNC", "GLOBAL", False, ""),
            sym("_ZN3c104cuda20CUDACachingAllocator9allocatorE", "OBJECT", "GLOBAL", False, ""),
        ]
    )
    assert [s.pretty for s in plan["libtorch_cuda.so"]] == ["at::cuda::getCurrentDeviceProperties()"]
    [allocator] = plan["libc10_cuda.so"]
    assert allocator.is_data and allocator.pretty == "c10::cuda::CUDACachingAllocator::allocator"
    # A missing non-CUDA symbol means a torch/torchvision version mismatch: stubbing it would hide that.
    with pytest.raises(fixer.RepairError, match="versions do not match"):
        fixer.plan_stubs([sym("_ZN3c106detail14torchCheckFailEPKcS2_jS2_", "FUNC", "GLOBAL", False, "")])


@needs_binutils
@pytest.mark.parametrize(
    ("call", "message"),
    [
        ("lib._ZN3c104cuda12device_countEv()", "c10::cuda::device_count() was called"),
        (
            # What a CUDA caller does with the allocator global: load the pointer, make a virtual call.
            "p = ctypes.c_void_p.in_dll(lib, '_ZN3c104cuda20CUDACachingAllocator9allocatorE').value\n"
            "word = ctypes.POINTER(ctypes.c_void_p)\n"
            "vtable = ctypes.cast(ctypes.cast(p, word)[0], word)\n"
            "ctypes.CFUNCTYPE(None)(vtable[41])()",
            "a virtual method of a stubbed CUDA object was called",
        ),
    ],
)
def test_stub_library_exports_symbols_that_abort_with_a_message(tmp_path: Path, call: str, message: str) -> None:
    stubs = [
        fixer.Stub("_ZN3c104cuda12device_countEv", "c10::cuda::device_count()", is_data=False),
        fixer.Stub("_ZN3c104cuda20CUDACachingAllocator9allocatorE", "allocator", is_data=True),
    ]
    lib_path = fixer.build_stub_library("libc10_cuda.so", stubs, tmp_path)
    assert fixer.dynamic_entries(lib_path, "SONAME") == ["libc10_cuda.so"]
    exported = {s.name: s.kind for s in fixer.dynsyms(lib_path) if s.defined}
    assert exported["_ZN3c104cuda12device_countEv"] == "FUNC"
    assert exported["_ZN3c104cuda20CUDACachingAllocator9allocatorE"] == "OBJECT"
    code = f"import ctypes\nlib = ctypes.CDLL({str(lib_path)!r})\n{call}\n"
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert proc.returncode != 0
    assert f"FaceInsight stub libc10_cuda.so: {message}" in proc.stderr
