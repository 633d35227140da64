"""``tunelab doctor``: what is wrong with this install, and how to fix it.

Checks the torch build and its device, whether bf16 pays on this CPU, the memory allocator
(tunelab.allocator), the versions of the libraries we follow against the set the suite was last
green with (``constraints.txt`` beside the sources), bitsandbytes, the packaged models (``minilm``,
``smollm2``) and write access to the cache. Each check is a plain function returning ``Finding``s,
so the CLI only prints them.
"""

from __future__ import annotations

import importlib.metadata
import importlib.util
import os
import tempfile
from dataclasses import dataclass
from pathlib import Path

from tunelab.allocator import (
    CHOICE_VARIABLE,
    INSTALL_HINT,
    PRELOADED_VARIABLE,
    allocator_choice,
    find_tcmalloc,
    loaded_allocator,
)
from tunelab.cache_dirs import cache_dir
from tunelab.errors import UserError
from tunelab.models.resolve import PACKAGED_MODELS

CONSTRAINTS = Path(__file__).resolve().parents[2] / "constraints.txt"
FOLLOWED = ("transformers", "peft", "accelerate", "datasets", "tokenizers", "safetensors", "huggingface-hub", "gguf")
REINSTALL = "./scripts/install.sh (reinstalls the tested set)"


@dataclass(frozen=True)
class Finding:
    check: str
    ok: bool
    detail: str
    fix: str = ""

    def line(self) -> str:
        mark = "ok  " if self.ok else "FIX "
        return f"{mark} {self.check:<16} {self.detail}" + (f"\n      -> {self.fix}" if self.fix else "")


def installed_version(package: str) -> str | None:
    try:
        return importlib.metadata.version(package)
    except importlib.metadata.PackageNotFoundError:
        return None


def check_torch() -> list[Finding]:
    if importlib.util.find_spec("torch") is None:
        return [Finding("torch", False, "not installed", "./scripts/install.sh (a CPU build) or your CUDA build")]
    import torch

    if torch.cuda.is_available():
        device = f"CUDA {torch.version.cuda}, {torch.cuda.device_count()} x {torch.cuda.get_device_name(0)}"
    else:
        device = "CPU only" + (f" (build for CUDA {torch.version.cuda}, no GPU visible)" if torch.version.cuda else "")
    return [Finding("torch", True, f"{torch.__version__}, {device}")]


def check_cpu_bf16() -> list[Finding]:
    """On a machine without a GPU, whether ``train.precision=bf16`` would train faster than fp32 here
    (measured: about a second; tunelab.training.cpu_bf16). Slow bf16 is a fact to know, not a fault."""
    from tunelab.training.cpu_bf16 import cpu_bf16_rates, fastest_precision

    precision = fastest_precision()
    if precision == "auto":
        return []  # training runs on the GPU there
    verdict = (
        "train.precision=bf16 trains faster here" if precision == "bf16" else "bf16 would train slower than fp32 (auto)"
    )
    return [Finding("cpu bf16", True, f"{cpu_bf16_rates().describe()}, so {verdict}")]


def tested_versions(constraints: Path = CONSTRAINTS) -> dict[str, str]:
    """package -> version pinned in constraints.txt (names normalised as pip does)."""
    pins = {}
    for line in constraints.read_text(encoding="utf-8").splitlines():
        name, _, version = line.split("#", 1)[0].strip().partition("==")
        if name and version:
            pins[name.lower().replace("_", "-")] = version.strip()
    return pins


def check_versions(constraints: Path = CONSTRAINTS) -> list[Finding]:
    if not constraints.is_file():
        return [Finding("versions", True, "no constraints.txt beside the sources: the tested set is not known here")]
    pins = tested_versions(constraints)
    findings = []
    for package in FOLLOWED:
        version, tested = installed_version(package), pins.get(package)
        if version is None:
            findings.append(Finding(package, False, f"not installed (tested with {tested})", REINSTALL))
        elif tested is not None and version != tested:
            findings.append(Finding(package, False, f"{version}, tested with {tested}", REINSTALL))
        else:
            findings.append(Finding(package, True, version))
    return findings


def check_bitsandbytes() -> list[Finding]:
    version = installed_version("bitsandbytes")
    if version is None:
        return [Finding("bitsandbytes", False, "not installed: qlora cannot run", "pip install 'tunelab[quant]'")]
    import torch

    where = "CUDA" if torch.cuda.is_available() else "CPU (4-bit runs, slowly)"
    return [Finding("bitsandbytes", True, f"{version}, {where}")]


def check_packaged_models() -> list[Finding]:
    findings = []
    for name, packaged in PACKAGED_MODELS.items():
        try:
            location = Path(packaged.location(name))
        except UserError:
            findings.append(Finding(f"model {name}", False, f"missing (package {packaged.package})", packaged.install))
            continue
        if not location.exists():
            findings.append(Finding(f"model {name}", False, f"{location} is missing", packaged.install))
        elif packaged.gguf_name and importlib.util.find_spec("gguf") is None:
            fix = "pip install 'tunelab[gguf]'"
            findings.append(Finding(f"model {name}", False, "the gguf reader is missing", fix))
        else:
            findings.append(Finding(f"model {name}", True, str(location)))
    return findings


def check_cache() -> list[Finding]:
    root = cache_dir("gguf").parent
    try:
        root.mkdir(parents=True, exist_ok=True)
        with tempfile.NamedTemporaryFile(dir=root):
            pass
    except OSError as error:
        fix = "make it writable, or set TUNELAB_CACHE_DIR to a folder that is"
        return [Finding("cache", False, f"{root} is not writable ({error.strerror})", fix)]
    return [Finding("cache", True, str(root))]


def check_allocator() -> list[Finding]:
    """The malloc this process runs on; tcmalloc's absence is a speed and memory hint, not a fault."""
    loaded = loaded_allocator()
    if loaded != "system":
        return [Finding("allocator", True, loaded)]
    if allocator_choice(os.environ) == "system":
        return [Finding("allocator", True, f"the system's malloc ({CHOICE_VARIABLE}=system)")]
    found = find_tcmalloc()
    if found and os.environ.get(PRELOADED_VARIABLE):
        return [Finding("allocator", False, f"{found} was preloaded but is not in use", "check LD_PRELOAD")]
    if found:
        return [
            Finding("allocator", True, f"the system's malloc in this process; the tunelab command preloads {found}")
        ]
    detail = "the system's malloc: on tcmalloc training measured x1.1-1.3 tokens/s at x0.66 peak RSS (bench/vs_trl.py)"
    return [Finding("allocator", True, detail, INSTALL_HINT)]


def diagnose() -> list[Finding]:
    return [
        *check_torch(),
        *check_cpu_bf16(),
        *check_allocator(),
        *check_versions(),
        *check_bitsandbytes(),
        *check_packaged_models(),
        *check_cache(),
    ]
