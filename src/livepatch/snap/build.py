"""``make snap``: build the snap here as ``snapcraft pack`` would, then ``snap pack`` it.

snapcraft is not on these machines (it is itself a snap and needs snapd), so
this module runs the steps snapcraft 8 takes for snap/snapcraft.yaml on core24,
read from craft-parts and snapcraft:

- the ``python`` part (craft_parts/plugins/python_plugin.py): ``python3 -m venv
  INSTALL``; ``pip install -c CONSTRAINTS -U pip setuptools wheel``, then the
  ``python-requirements``, then ``.``; executables whose shebang names
  INSTALL/bin/python3 get ``#!/usr/bin/env python3``; INSTALL/bin/python3 is
  pointed at the base's interpreter. ``override-build``'s ``craftctl set
  version=`` becomes: ask the installed package for ``__version__``.
- ``dump`` parts with ``organize`` and ``stage``/``prime`` filters.
- snapcraft's assets (snapcraft/parts/setup_assets.py): ``meta/gui``, and for
  each file in prime/snap/hooks a wrapper ``meta/hooks/NAME`` that execs it.
- meta/snap.yaml (snapcraft/meta/snap_yaml.py): the project's metadata,
  ``architectures`` from ``platforms``, the default ``environment``
  (LD_LIBRARY_PATH and PATH), apps and hooks as declared.
- ``snap pack PRIME DIR`` from Debian's snapd, which validates snap.yaml.

core24's interpreter: core24 carries CPython 3.12 at /usr/bin/python3.12, and
snapcraft's python plugin on core24 makes the venv with the build base's python3
and points bin/python3 at /usr/bin/python3.12, so the packages land in
lib/python3.12/site-packages. This host is Debian 12 (Python 3.11), so the venv
is made with a CPython 3.12 found here (``CORE24_PYTHON_CANDIDATES``: pyenv's
3.12.1 on these machines) and then laid out as on core24: bin/python3 ->
/usr/bin/python3.12, bin/python -> /usr/bin/python3, pyvenv.cfg's ``home`` =
/usr/bin. Without a CPython 3.12 the build stops and says which one it needs.
The .snap then runs on core24 (and on the test machine's local core24 base,
which carries the same CPython at /usr/bin/python3.12: tests/snapd/image.py).

Why this is still hand-written and not craft-parts: craft-parts' lifecycle
installs the plugin's build packages with apt (python3-dev, python3-venv)
and runs the parts in a build environment of the base; here the steps are the
ten lines of its python plugin (craft_parts/plugins/base.py
``get_build_commands``) around pip, with the interpreter substituted.

The build is cached: a digest of every input (snap/, hooks/, interfaces/,
src/, pyproject.toml, README.md, the interpreter) is kept next to the .snap,
and an unchanged digest reuses it.
"""

from __future__ import annotations

import argparse
import contextlib
import fcntl
import fnmatch
import hashlib
import os
import re
import shutil
import subprocess
import sys
import time
from collections.abc import Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

from livepatch.errors import LivepatchError

INPUTS = ("pyproject.toml", "README.md", "snap", "hooks", "interfaces", "src")
SKIPPED = ("__pycache__", "*.pyc", "*.egg-info", ".mypy_cache", ".ruff_cache")
SNAP_PATH = "$SNAP/usr/sbin:$SNAP/usr/bin:$SNAP/sbin:$SNAP/bin:$PATH"
TRIPLETS = {"amd64": "x86_64-linux-gnu", "arm64": "aarch64-linux-gnu"}
BASE_PYTHON = {"core24": "3.12", "core22": "3.10"}
"""The CPython each base carries at /usr/bin/python3.X (snapcraft links bin/python3 to it)."""
CORE24_PYTHON_CANDIDATES = (
    Path("/usr/bin/python3.12"),
    Path("/usr/local/bin/python3.12"),
    Path("/root/.pyenv/versions/3.12.1/bin/python3.12"),
)
SCRIPT_INTERPRETER = "#!/usr/bin/env python3"

# snap.yaml keys in the order snapcraft writes them (SnapMetadata's fields).
SNAP_YAML_ORDER = (
    "name",
    "title",
    "version",
    "summary",
    "description",
    "license",
    "type",
    "architectures",
    "base",
    "assumes",
    "epoch",
    "apps",
    "confinement",
    "grade",
    "environment",
    "plugs",
    "slots",
    "hooks",
    "layout",
)
PROJECT_KEYS = frozenset({*SNAP_YAML_ORDER, "adopt-info", "platforms", "parts"} - {"architectures"})
APP_KEYS = frozenset(
    {
        "command",
        "daemon",
        "restart-condition",
        "restart-delay",
        "plugs",
        "slots",
        "autostart",
        "after",
        "before",
        "environment",
        "start-timeout",
        "stop-timeout",
        "refresh-mode",
        "stop-mode",
        "install-mode",
        "command-chain",
        "common-id",
        "timer",
        "daemon-scope",
        "aliases",
    }
)
PART_KEYS = frozenset(
    {
        "plugin",
        "source",
        "source-type",
        "python-requirements",
        "python-constraints",
        "python-packages",
        "override-build",
        "organize",
        "stage",
        "prime",
    }
)


class BuildError(LivepatchError):
    code = "snap-build-failed"


@dataclass(frozen=True)
class Built:
    snap: Path
    version: str
    digest: str
    cached: bool
    seconds: float


# -- the project ---------------------------------------------------------------------


def load_project(repo: Path) -> dict[str, Any]:
    """snap/snapcraft.yaml, checked to use only what this builder implements."""
    path = repo / "snap" / "snapcraft.yaml"
    project = yaml.safe_load(path.read_text())
    if not isinstance(project, dict):
        raise BuildError(f"{path} does not hold a mapping.")
    _only(path.name, project, PROJECT_KEYS)
    for name, app in (project.get("apps") or {}).items():
        _only(f"apps.{name}", app, APP_KEYS)
    for name, part in (project.get("parts") or {}).items():
        _only(f"parts.{name}", part, PART_KEYS)
        if part.get("plugin") not in ("python", "dump"):
            raise BuildError(
                f"parts.{name} uses the {part.get('plugin')!r} plugin; `make snap` builds "
                "python and dump parts only (livepatch.snap.build)."
            )
    return project


def _only(where: str, mapping: Mapping[str, Any], allowed: frozenset[str]) -> None:
    unknown = sorted(set(mapping) - allowed)
    if unknown:
        raise BuildError(
            f"{where} uses {', '.join(unknown)}, which `make snap` does not implement; "
            "teach livepatch.snap.build about it."
        )


def host_architecture() -> str:
    machine = os.uname().machine
    return {"x86_64": "amd64", "aarch64": "arm64"}.get(machine, machine)


def snap_metadata(project: Mapping[str, Any], *, version: str, arch: str) -> dict[str, Any]:
    """meta/snap.yaml's content for `project` built for `arch`, as snapcraft writes it."""
    platforms = project.get("platforms") or {arch: None}
    if arch not in platforms:
        raise BuildError(f"snapcraft.yaml builds for {', '.join(platforms)}, not for {arch}.")
    triplet = TRIPLETS.get(arch)
    libraries = ["${SNAP_LIBRARY_PATH}${LD_LIBRARY_PATH:+:$LD_LIBRARY_PATH}", "$SNAP/lib"]
    libraries += ["$SNAP/usr/lib"]
    if triplet:
        libraries += [f"$SNAP/lib/{triplet}", f"$SNAP/usr/lib/{triplet}"]
    environment = dict(project.get("environment") or {})
    environment.setdefault("LD_LIBRARY_PATH", ":".join(libraries))
    environment.setdefault("PATH", SNAP_PATH)
    values: dict[str, Any] = {
        **{key: project[key] for key in SNAP_YAML_ORDER if key in project},
        "version": version,
        "architectures": [arch],
        "grade": project.get("grade", "stable"),
        "environment": environment,
    }
    if project.get("hooks"):
        values["hooks"] = {name: dict(hook or {}) for name, hook in project["hooks"].items()}
    return {key: values[key] for key in SNAP_YAML_ORDER if key in values}


class _Dumper(yaml.SafeDumper):
    pass


def _str(dumper: yaml.SafeDumper, data: str) -> yaml.ScalarNode:
    style = "|" if "\n" in data else None
    return dumper.represent_scalar("tag:yaml.org,2002:str", data, style=style)


_Dumper.add_representer(str, _str)


def dump_yaml(data: Mapping[str, Any]) -> str:
    return yaml.dump(dict(data), Dumper=_Dumper, sort_keys=False, default_flow_style=False)


# -- inputs and cache ----------------------------------------------------------------


def _skipped(path: Path) -> bool:
    return any(fnmatch.fnmatch(part, pattern) for part in path.parts for pattern in SKIPPED)


def input_files(repo: Path) -> Iterator[Path]:
    for name in INPUTS:
        top = repo / name
        if top.is_file():
            yield top
        elif top.is_dir():
            for path in sorted(top.rglob("*")):
                relative = path.relative_to(repo)
                if (path.is_file() or path.is_symlink()) and not _skipped(relative):
                    yield path


def input_digest(repo: Path, python: Path) -> str:
    digest = hashlib.sha256()
    interpreter = python.resolve()
    digest.update(f"{interpreter}\0{_python_version(python)}\0".encode())
    for path in input_files(repo):
        relative = path.relative_to(repo)
        mode = path.lstat().st_mode & 0o111
        content = os.readlink(path).encode() if path.is_symlink() else path.read_bytes()
        digest.update(f"{relative}\0{mode:o}\0{len(content)}\0".encode())
        digest.update(content)
    return digest.hexdigest()


def _python_version(python: Path) -> str:
    return _run([str(python), "-c", "import sys; print(sys.version)"]).strip()


# -- running things ------------------------------------------------------------------


def _run(
    argv: Sequence[str], *, cwd: Path | None = None, env: Mapping[str, str] | None = None
) -> str:
    done = subprocess.run(
        list(argv),
        cwd=cwd,
        env=dict(env) if env is not None else None,
        capture_output=True,
        text=True,
        check=False,
    )
    if done.returncode != 0:
        output = (done.stdout + done.stderr).strip()[-4000:]
        raise BuildError(f"`{' '.join(argv)}` exited {done.returncode}:\n{output}")
    return done.stdout


def _say(text: str) -> None:
    print(f"snap: {text}", flush=True)


# -- parts ---------------------------------------------------------------------------


def _copy_source(source: Path, target: Path) -> None:
    ignore = shutil.ignore_patterns(*SKIPPED, "build", ".venv", ".git")
    if target.exists():
        shutil.rmtree(target)
    shutil.copytree(source, target, symlinks=True, ignore=ignore)


def build_python_part(
    repo: Path, part: Mapping[str, Any], install: Path, work: Path, python: Path
) -> str:
    """The python plugin's build; returns the version the part adopts."""
    source = repo / part.get("source", ".")
    build = work / "build"
    build.mkdir(parents=True)
    for name in ("pyproject.toml", "README.md", "src", "snap/local"):
        origin = source / name
        if origin.is_dir():
            _copy_source(origin, build / name)
        elif origin.is_file():
            (build / name).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(origin, build / name)
    env = {**os.environ, "PIP_DISABLE_PIP_VERSION_CHECK": "1"}
    for name in ("PYTHONDONTWRITEBYTECODE", "PYTHONPATH", "PYTHONHOME", "VIRTUAL_ENV"):
        env.pop(name, None)
    _say(f"python part: {python} -m venv")
    _run([str(python), "-m", "venv", str(install)], env=env)
    pip = [str(install / "bin" / "pip"), "install", "--quiet"]
    for constraint in part.get("python-constraints") or []:
        pip += ["-c", str(build / constraint)]
    packages = part.get("python-packages", ["pip", "setuptools", "wheel"])
    if packages:
        _run([*pip, "-U", *packages], cwd=build, env=env)
    requirements = [arg for r in part.get("python-requirements") or [] for arg in ("-r", r)]
    if requirements:
        _say("python part: requirements")
        _run([*pip, "-U", *requirements], cwd=build, env=env)
    _say("python part: the package")
    _run([*pip, "-U", "."], cwd=build, env=env)
    _fix_shebangs(install)
    minor = _python_minor(python)
    version = _run(
        [str(install / "bin" / "python3"), "-c", "import livepatch; print(livepatch.__version__)"],
        env=env,
    ).strip()
    lay_out_for_base(install, minor)
    if not re.fullmatch(r"[A-Za-z0-9][A-Za-z0-9.+~-]{0,31}", version):
        raise BuildError(f"The package's version {version!r} is not a valid snap version.")
    return version


def _python_minor(python: Path) -> str:
    return _run([str(python), "-c", "import sys; print('%d.%d' % sys.version_info[:2])"]).strip()


def lay_out_for_base(install: Path, minor: str) -> None:
    """The venv as snapcraft leaves it on a base whose interpreter is /usr/bin/python`minor`:
    bin/python3 -> /usr/bin/python3.X, bin/python -> /usr/bin/python3, pyvenv.cfg's home
    /usr/bin (the venv was made here by an interpreter elsewhere)."""
    binary = install / "bin"
    for name, target in (("python3", f"/usr/bin/python{minor}"), ("python", "/usr/bin/python3")):
        (binary / name).unlink(missing_ok=True)
        (binary / name).symlink_to(target)
    versioned = binary / f"python{minor}"
    versioned.unlink(missing_ok=True)
    versioned.symlink_to("python3")
    config = install / "pyvenv.cfg"
    lines = []
    for line in config.read_text().splitlines():
        key = line.split("=", 1)[0].strip()
        if key == "home":
            line = "home = /usr/bin"
        elif key == "executable":
            line = f"executable = /usr/bin/python{minor}"
        elif key == "command":
            continue  # names the build machine's paths
        lines.append(line)
    config.write_text("\n".join(lines) + "\n")


def base_python(project: Mapping[str, Any], candidates: Sequence[Path]) -> Path:
    """A CPython of the version the project's base carries, or a BuildError naming it."""
    base = str(project.get("base", "core24"))
    wanted = BASE_PYTHON.get(base)
    if wanted is None:
        raise BuildError(f"`make snap` does not know which Python {base} carries.")
    for candidate in candidates:
        if candidate.is_file() and os.access(candidate, os.X_OK):
            return candidate
    raise BuildError(
        f"{base} runs the snap with CPython {wanted} (/usr/bin/python{wanted}), and no CPython "
        f"{wanted} was found here (looked for {', '.join(map(str, candidates))}); install one "
        f"(e.g. `pyenv install {wanted}`) or pass --python."
    )


def _fix_shebangs(install: Path) -> None:
    venv_python = f"#!{install}/bin/python3"
    for path in install.rglob("*"):
        if not path.is_file() or path.is_symlink() or not os.access(path, os.X_OK):
            continue
        with path.open("rb") as stream:
            head = stream.readline()
        if not head.startswith(venv_python.encode()):
            continue
        data = path.read_bytes()
        path.write_bytes(SCRIPT_INTERPRETER.encode() + b"\n" + data.split(b"\n", 1)[1])


def build_dump_part(repo: Path, part: Mapping[str, Any], install: Path) -> None:
    source = repo / part["source"]
    install.mkdir(parents=True, exist_ok=True)
    organize: Mapping[str, str] = part.get("organize") or {}
    for path in sorted(source.iterdir()):
        if _skipped(Path(path.name)):
            continue
        destination = path.name
        for pattern, target in organize.items():
            if fnmatch.fnmatch(path.name, pattern):
                destination = target + path.name if target.endswith("/") else target
                break
        target_path = install / destination
        target_path.parent.mkdir(parents=True, exist_ok=True)
        if path.is_dir():
            shutil.copytree(path, target_path, symlinks=True)
        else:
            shutil.copy2(path, target_path)


def _relative_files(root: Path) -> list[Path]:
    return sorted(p.relative_to(root) for p in root.rglob("*") if p.is_file() or p.is_symlink())


def apply_filter(root: Path, patterns: Iterable[str]) -> None:
    """snapcraft's stage/prime filters: keep what the plain entries name (all when there
    are none), then drop what the '-' entries name."""
    patterns = list(patterns)
    if not patterns:
        return
    keep = [p for p in patterns if not p.startswith("-")]
    drop = [p[1:] for p in patterns if p.startswith("-")]

    def matches(relative: Path, globs: list[str]) -> bool:
        text = str(relative)
        return any(
            fnmatch.fnmatch(text, glob)
            or any(fnmatch.fnmatch(str(parent), glob) for parent in relative.parents)
            for glob in globs
        )

    for relative in _relative_files(root):
        if (keep and not matches(relative, keep)) or matches(relative, drop):
            (root / relative).unlink()
    for directory in sorted(
        (p for p in root.rglob("*") if p.is_dir() and not p.is_symlink()), reverse=True
    ):
        if not any(directory.iterdir()):
            directory.rmdir()


def _merge(install: Path, prime: Path) -> None:
    for relative in _relative_files(install):
        target = prime / relative
        if target.exists() or target.is_symlink():
            raise BuildError(f"Two parts provide {relative}; snapcraft would refuse that too.")
        target.parent.mkdir(parents=True, exist_ok=True)
        origin = install / relative
        if origin.is_symlink():
            target.symlink_to(os.readlink(origin))
        else:
            shutil.copy2(origin, target)
    for directory in sorted(p for p in install.rglob("*") if p.is_dir() and not p.is_symlink()):
        (prime / directory.relative_to(install)).mkdir(parents=True, exist_ok=True)
    # A venv's lib64 -> lib symlink is a directory symlink: keep it.


def write_hook_wrappers(prime: Path) -> list[str]:
    """snapcraft's wrappers: meta/hooks/NAME execs $SNAP/snap/hooks/NAME."""
    hooks = prime / "snap" / "hooks"
    if not hooks.is_dir():
        return []
    meta = prime / "meta" / "hooks"
    meta.mkdir(parents=True, exist_ok=True)
    names = []
    for hook in sorted(hooks.iterdir()):
        hook.chmod(hook.stat().st_mode | 0o755)
        wrapper = meta / hook.name
        wrapper.write_text(f'#!/bin/sh\nexec "$SNAP/snap/hooks/{hook.name}" "$@"\n')
        wrapper.chmod(0o755)
        names.append(hook.name)
    return names


# -- the whole build -----------------------------------------------------------------


def assemble(repo: Path, work: Path, python: Path) -> tuple[Path, str]:
    """Parts, prime tree and meta/; returns (prime, version)."""
    project = load_project(repo)
    parts_dir, prime = work / "parts", work / "prime"
    for directory in (parts_dir, prime):
        if directory.exists():
            shutil.rmtree(directory)
    prime.mkdir(parents=True)
    adopted: str | None = None
    for name, part in (project.get("parts") or {}).items():
        install = parts_dir / name / "install"
        if part["plugin"] == "python":
            version = build_python_part(repo, part, install, parts_dir / name, python)
            if project.get("adopt-info") == name:
                adopted = version
        else:
            build_dump_part(repo, part, install)
        apply_filter(install, part.get("stage") or [])
        apply_filter(install, part.get("prime") or [])
        _merge(install, prime)
    version = str(project.get("version") or adopted or "")
    if not version:
        raise BuildError("snapcraft.yaml sets no version and adopts none from a part.")
    (prime / "meta" / "gui").mkdir(parents=True, exist_ok=True)
    write_hook_wrappers(prime)
    metadata = snap_metadata(project, version=version, arch=host_architecture())
    (prime / "meta" / "snap.yaml").write_text(dump_yaml(metadata))
    return prime, version


def pack(prime: Path, directory: Path) -> Path:
    output = _run(["snap", "pack", str(prime), str(directory)])
    match = re.search(r"built: (.+\.snap)", output)
    if not match:
        raise BuildError(f"snap pack did not say what it built: {output!r}")
    built = Path(match.group(1))
    return built if built.is_absolute() else directory / built


@contextlib.contextmanager
def _exclusive(path: Path) -> Iterator[None]:
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("w") as stream:
        fcntl.flock(stream, fcntl.LOCK_EX)
        yield


def build(repo: Path, work: Path, *, python: Path | None = None, force: bool = False) -> Built:
    started = time.monotonic()
    if python is None:
        python = base_python(load_project(repo), CORE24_PYTHON_CANDIDATES)
    with _exclusive(work / ".lock"):
        digest = input_digest(repo, python)
        stamp = work / "inputs.sha256"
        if not force and stamp.exists():
            recorded = stamp.read_text().split()
            if len(recorded) == 3 and recorded[0] == digest and (work / recorded[2]).is_file():
                return Built(
                    work / recorded[2], recorded[1], digest, True, time.monotonic() - started
                )
        stamp.unlink(missing_ok=True)
        for old in work.glob("*.snap"):
            old.unlink()
        prime, version = assemble(repo, work, python)
        _say("snap pack")
        snap = pack(prime, work)
        stamp.write_text(f"{digest} {version} {snap.name}\n")
    return Built(snap, version, digest, False, time.monotonic() - started)


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m livepatch.snap.build",
        description="Build the snap as snapcraft pack would (see the module's docstring).",
    )
    parser.add_argument("--repo", type=Path, default=Path.cwd(), help="the repository root")
    parser.add_argument("--out", type=Path, help="the build directory (default REPO/build/snap)")
    parser.add_argument(
        "--python", type=Path, help="the CPython the base carries (default: found here)"
    )
    parser.add_argument("--force", action="store_true", help="rebuild even if nothing changed")
    args = parser.parse_args(argv)
    repo = args.repo.resolve()
    work = (args.out or repo / "build" / "snap").resolve()
    try:
        built = build(repo, work, python=args.python, force=args.force)
    except (LivepatchError, OSError) as error:
        print(f"snap: {error}", file=sys.stderr)
        return 1
    how = "inputs unchanged, reused" if built.cached else "built"
    size = built.snap.stat().st_size / 1e6
    _say(f"{how} livepatch {built.version} in {built.seconds:.1f} s ({size:.1f} MB)")
    print(built.snap)
    return 0


if __name__ == "__main__":
    sys.exit(main())
