"""A function's image, as near as we get without Docker: its dependency set on the image's Python.

The Dockerfile installs, on ``public.ecr.aws/lambda/python:3.12``, only ``functions/<name>/requirements.txt``
and ``layers/contracts`` + ``layers/common`` with ``constraints.txt`` applied. ``image_python(function)``
builds the same set
into a Python 3.12 virtualenv under ``.tools/image-venvs/`` (cached by the hash of those files, so a
repeated run only reinstalls the shared package when its code changed) and returns its interpreter.
``resolve_for_lambda(function)`` asks pip to resolve the same set for the Lambda platform (CPython 3.12,
manylinux x86_64 up to glibc 2.34 — Amazon Linux 2023), binary wheels only, without installing.

Python 3.12 is found in IMAGE_PYTHON, on PATH as python3.12, or in pyenv (~/.pyenv/versions/3.12.*).
"""

from __future__ import annotations

import glob
import hashlib
import json
import os
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
CACHE = ROOT / ".tools" / "image-venvs"
PIP_CACHE = ROOT / ".tools" / "pip-cache"
IMAGE_PYTHON_VERSION = "3.12"
# public.ecr.aws/lambda/python:3.12 runs on Amazon Linux 2023 (glibc 2.34): every manylinux tag up to
# glibc 2.34, and the legacy aliases (pip does not widen a --platform on its own).
LAMBDA_PLATFORMS = [
    *(f"manylinux_2_{minor}_x86_64" for minor in range(34, 4, -1)),
    "manylinux2014_x86_64",
    "manylinux2010_x86_64",
    "manylinux1_x86_64",
]
# The shared packages the Dockerfile copies in, in install order.
SHARED = (ROOT / "layers" / "contracts", ROOT / "layers" / "common")


def find_python() -> str | None:
    candidates = [os.environ.get("IMAGE_PYTHON") or "", shutil.which(f"python{IMAGE_PYTHON_VERSION}") or ""]
    candidates += sorted(glob.glob(os.path.expanduser(f"~/.pyenv/versions/{IMAGE_PYTHON_VERSION}.*/bin/python")))
    for candidate in candidates:
        if not candidate or not os.access(candidate, os.X_OK):
            continue
        out = subprocess.run(
            [candidate, "-c", "import sys; print('%d.%d' % sys.version_info[:2])"], capture_output=True, text=True
        )
        if out.returncode == 0 and out.stdout.strip() == IMAGE_PYTHON_VERSION:
            return candidate
    return None


def _digest(*paths: Path) -> str:
    h = hashlib.sha256()
    for path in paths:
        files = (
            sorted(
                p for p in path.rglob("*") if p.is_file() and "__pycache__" not in p.parts and ".egg-info" not in str(p)
            )
            if path.is_dir()
            else [path]
        )
        for file in files:
            h.update(str(file.relative_to(ROOT)).encode())
            h.update(file.read_bytes())
    return h.hexdigest()[:16]


def _pip(python: str | Path, *args: str) -> None:
    env = {**os.environ, "PIP_CACHE_DIR": str(PIP_CACHE), "PIP_DISABLE_PIP_VERSION_CHECK": "1"}
    subprocess.run([str(python), "-m", "pip", *args], check=True, env=env, stdout=subprocess.DEVNULL)


def image_python(function: str, python: str) -> Path:
    """The interpreter of a virtualenv holding exactly the function's image dependency set."""
    requirements = ROOT / "functions" / function / "requirements.txt"
    constraints = ROOT / "constraints.txt"
    deps_key = _digest(requirements, constraints, *(package / "pyproject.toml" for package in SHARED))
    venv = CACHE / f"{function}-py{IMAGE_PYTHON_VERSION}-{deps_key}"
    interpreter = venv / "bin" / "python"
    stamp = venv / ".installed"
    if not stamp.exists():
        shutil.rmtree(venv, ignore_errors=True)
        for stale in CACHE.glob(f"{function}-py*"):
            shutil.rmtree(stale, ignore_errors=True)
        subprocess.run([python, "-m", "venv", str(venv)], check=True)
        _pip(interpreter, "install", "--quiet", "-c", str(constraints), "-r", str(requirements), *map(str, SHARED))
        stamp.write_text(deps_key)
    shared_key = _digest(*SHARED)
    shared_stamp = venv / ".shared"
    if not shared_stamp.exists() or shared_stamp.read_text() != shared_key:
        # the shared packages' code changed: reinstall them alone, as the image would copy them in
        _pip(interpreter, "install", "--quiet", "--no-deps", "--force-reinstall", *map(str, SHARED))
        shared_stamp.write_text(shared_key)
    return interpreter


def installed(interpreter: Path) -> dict[str, str]:
    out = subprocess.run(
        [str(interpreter), "-m", "pip", "list", "--format", "json", "--disable-pip-version-check"],
        capture_output=True,
        text=True,
        check=True,
    )
    return {p["name"]: p["version"] for p in json.loads(out.stdout)}


def resolve_for_lambda(function: str) -> dict[str, str]:
    """Resolve the function's image set for CPython 3.12 on manylinux x86_64, wheels only (a dry run).

    Returns {package: version} as pip would install it on the Lambda image; raises CalledProcessError
    (with pip's explanation on stderr) if it does not resolve.
    """
    with tempfile.TemporaryDirectory(prefix="image-resolve-") as tmp:
        wheels = Path(tmp)
        # the shared packages as wheels (pure Python), so the whole set can be binary-only
        _pip(sys.executable, "wheel", "--quiet", "--no-deps", "--wheel-dir", str(wheels), *map(str, SHARED))
        shared_wheels = sorted(str(w) for w in wheels.glob("daarion_*.whl"))
        report = wheels / "report.json"
        env = {**os.environ, "PIP_CACHE_DIR": str(PIP_CACHE), "PIP_DISABLE_PIP_VERSION_CHECK": "1"}
        subprocess.run(
            [
                sys.executable, "-m", "pip", "install", "--dry-run", "--quiet", "--ignore-installed",
                "--report", str(report),
                "--python-version", IMAGE_PYTHON_VERSION, "--implementation", "cp",
                *(arg for platform in LAMBDA_PLATFORMS for arg in ("--platform", platform)), "--only-binary=:all:",
                "-c", str(ROOT / "constraints.txt"),
                "-r", str(ROOT / "functions" / function / "requirements.txt"),
                *shared_wheels,
            ],
            check=True, env=env, capture_output=True, text=True,
        )  # fmt: skip
        data = json.loads(report.read_text())
    return {item["metadata"]["name"]: item["metadata"]["version"] for item in data["install"]}
