"""What this CPU can do for low precision, read from /proc/cpuinfo (Linux; elsewhere nothing is known).

Recorded with every benchmark and every low-precision proof, because int8 and bf16 speed depends on it:
VNNI (AVX-512 VNNI, AVX-VNNI or AMX-INT8) gives int8 dot products without the 16-bit saturation of
vpmaddubsw; AVX-512 BF16 and AMX-BF16 run bf16 natively (without them OpenVINO runs a bf16 hint in fp32).
"""

from __future__ import annotations

import platform
from dataclasses import asdict, dataclass
from pathlib import Path

_VNNI = {"avx512_vnni", "avx_vnni", "amx_int8"}
_BF16 = {"avx512_bf16", "amx_bf16"}


@dataclass(frozen=True)
class CpuFeatures:
    model: str
    avx2: bool
    avx512: bool
    vnni: bool
    avx512_bf16: bool
    amx: bool

    @property
    def bf16(self) -> bool:
        return self.avx512_bf16 or self.amx

    def describe(self) -> str:
        """'AVX2, AVX-512, VNNI, AVX-512 BF16, no AMX' — every feature named, present or not."""
        names = (("AVX2", self.avx2), ("AVX-512", self.avx512), ("VNNI", self.vnni),
                 ("AVX-512 BF16", self.avx512_bf16), ("AMX", self.amx))
        return ", ".join(name if have else f"no {name}" for name, have in names)

    def to_dict(self) -> dict:
        return {**asdict(self), "summary": self.describe()}


def _cpuinfo() -> tuple[str, set[str]]:
    model, flags = "", set[str]()
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name") and not model:
                model = line.split(":", 1)[1].strip()
            elif line.startswith("flags") and not flags:
                flags = set(line.split(":", 1)[1].split())
            if model and flags:
                break
    except OSError:
        pass
    return model or platform.processor() or "unknown", flags


def cpu_flags() -> set[str]:
    return _cpuinfo()[1]


def cpu_features() -> CpuFeatures:
    model, flags = _cpuinfo()
    return CpuFeatures(model=model, avx2="avx2" in flags, avx512="avx512f" in flags, vnni=bool(flags & _VNNI),
                       avx512_bf16="avx512_bf16" in flags, amx=bool(flags & {"amx_tile", "amx_int8", "amx_bf16"}))
