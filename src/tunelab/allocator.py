"""Which malloc a tunelab process runs on, and starting the ``tunelab`` command on tcmalloc.

On the CPU, PyTorch takes every activation and gradient from the C library's ``malloc`` and gives
it back within the step. glibc's allocator keeps much of what a training step frees as resident
memory it cannot hand out again for the next, larger tensor, and zero-fills fresh pages for it;
gperftools' tcmalloc reuses them. Measured on SmolLM2 LoRA, batch 4 x 512, fp32, two threads
(bench/vs_trl.py, rows ``tunelab-system-malloc`` and ``tunelab-packing-system-malloc`` against
the defaults): the same steps at x1.1-1.3 the tokens/s and x0.66 the peak RSS under tcmalloc.

The allocator is fixed when a process starts (``LD_PRELOAD``), so the ``tunelab`` command, before
it imports torch, executes itself once more with tcmalloc preloaded where the machine has it
(Debian and Ubuntu: ``apt install libtcmalloc-minimal4``; ``scripts/install.sh`` does that where it
can). Processes it starts (``compare``'s runs) inherit it. ``TUNELAB_ALLOCATOR`` chooses: ``auto``
(the default: tcmalloc where found, else the system's), ``tcmalloc`` (an error where absent) or
``system``. ``from tunelab import train`` keeps the allocator of the Python that imports it; the
run's ``summary.json`` says which one it was.

``torch.backends.xeon.run_cpu`` preloads tcmalloc for a script too, but it looks only for an
unversioned ``libtcmalloc.so`` in a few folders, which those distributions' runtime packages do
not install, and it sets thread affinity that tunelab leaves to ``train.threads``: this is why the
lookup and the re-execution are ours.
"""

from __future__ import annotations

import ctypes.util
import glob
import os
import sys
import sysconfig
from collections.abc import Iterable, Mapping
from pathlib import Path

from tunelab.errors import UserError

CHOICE_VARIABLE = "TUNELAB_ALLOCATOR"
CHOICES = ("auto", "tcmalloc", "system")
PRELOADED_VARIABLE = "TUNELAB_ALLOCATOR_PRELOADED"  # set in the re-executed process: never loop
LIBRARY_NAMES = ("tcmalloc_minimal", "tcmalloc")  # gperftools' malloc without and with its profilers
KNOWN_ALLOCATORS = {"libtcmalloc": "tcmalloc", "libjemalloc": "jemalloc", "libmimalloc": "mimalloc"}
INSTALL_HINT = "apt install libtcmalloc-minimal4 (Debian, Ubuntu) or your system's gperftools package"
# gperftools prints a line to stderr for every allocation over 1 GiB by default, and a large
# model's weights and logits are such allocations: report none
LARGE_ALLOCATION_REPORT = str(2**60)


def allocator_choice(environ: Mapping[str, str]) -> str:
    choice = environ.get(CHOICE_VARIABLE, "auto").strip().lower() or "auto"
    if choice not in CHOICES:
        raise UserError(f"{CHOICE_VARIABLE}={choice}: expected one of {', '.join(CHOICES)}")
    return choice


def _library_folders(environ: Mapping[str, str]) -> list[str]:
    """Folders of this interpreter's architecture only: a library of another one cannot be preloaded."""
    folders = [f"{environ[name]}/lib" for name in ("CONDA_PREFIX", "VIRTUAL_ENV") if environ.get(name)]
    multiarch = sysconfig.get_config_var("MULTIARCH")
    system = [f"/usr/lib/{multiarch}"] if multiarch else ["/usr/lib64"]
    return [*folders, f"{sys.prefix}/lib", "/usr/local/lib", *system]


def find_tcmalloc(environ: Mapping[str, str] = os.environ) -> str | None:
    """tcmalloc's shared library: a name the dynamic loader resolves, or a path; None where absent."""
    for name in LIBRARY_NAMES:
        found = ctypes.util.find_library(name)  # the loader's own cache (ldconfig)
        if found:
            return found
    for folder in _library_folders(environ):
        for name in LIBRARY_NAMES:
            matches = sorted(glob.glob(f"{folder}/lib{name}.so*"))
            if matches:
                return matches[0]
    return None


def _preload_entries(environ: Mapping[str, str]) -> list[str]:
    """``LD_PRELOAD``'s libraries (the loader splits on colons and spaces)."""
    return [entry for entry in environ.get("LD_PRELOAD", "").replace(" ", ":").split(":") if entry]


def _is_allocator(entry: str, prefixes: Iterable[str] = KNOWN_ALLOCATORS) -> bool:
    return any(Path(entry).name.startswith(prefix) for prefix in prefixes)


def preload_environment(environ: Mapping[str, str] = os.environ, library: str | None = None) -> dict[str, str] | None:
    """The environment to run the command again in: with tcmalloc preloaded, or under ``system``
    without the tcmalloc a tunelab parent process preloaded. None where the process should go on as
    it is (not Linux, ``system`` chosen, an allocator already preloaded, or no tcmalloc found under
    ``auto``)."""
    choice = allocator_choice(environ)
    if not sys.platform.startswith("linux"):
        return None
    if choice == "system":
        if not environ.get(PRELOADED_VARIABLE):
            return None  # nothing of ours preloaded (a user's own LD_PRELOAD stands)
        kept = [entry for entry in _preload_entries(environ) if not _is_allocator(entry, ("libtcmalloc",))]
        updated = {key: value for key, value in environ.items() if key not in ("LD_PRELOAD", PRELOADED_VARIABLE)}
        return {**updated, "LD_PRELOAD": ":".join(kept)} if kept else updated
    if environ.get(PRELOADED_VARIABLE) or any(_is_allocator(entry) for entry in _preload_entries(environ)):
        return None
    library = library or find_tcmalloc(environ)
    if library is None:
        if choice == "tcmalloc":
            raise UserError(f"{CHOICE_VARIABLE}=tcmalloc: no tcmalloc library on this machine ({INSTALL_HINT})")
        return None
    return {
        **environ,
        "LD_PRELOAD": ":".join([library, *_preload_entries(environ)]),
        PRELOADED_VARIABLE: "1",
        "TCMALLOC_LARGE_ALLOC_REPORT_THRESHOLD": LARGE_ALLOCATION_REPORT,
    }


def relaunch_on_tcmalloc() -> None:
    """Execute this very command again with tcmalloc preloaded, where ``preload_environment`` says
    so; return (and run on the current allocator) otherwise, or where the execution fails."""
    environment = preload_environment()
    if environment is None:
        return
    command = [sys.executable, "-m", "tunelab", *sys.argv[1:]]
    sys.stdout.flush()
    sys.stderr.flush()
    try:
        os.execve(sys.executable, command, environment)
    except OSError:
        return


def loaded_allocator(maps: Path = Path("/proc/self/maps")) -> str:
    """The malloc this process runs on: ``tcmalloc``, ``jemalloc``, ``mimalloc`` or ``system``."""
    try:
        text = maps.read_text(encoding="utf-8", errors="replace")
    except OSError:
        return "system"
    for prefix, name in KNOWN_ALLOCATORS.items():
        if f"/{prefix}" in text:
            return name
    return "system"
