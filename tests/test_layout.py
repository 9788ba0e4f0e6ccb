"""One import name, imports that point one way, and a package that works from anywhere.

The rule these protect: ``pip install video-worker`` puts exactly one top-level name,
``worker``, into site-packages. Generic names (``models``, ``pipelines``) shadowed users'
own packages (YOLOv5-style training repositories import ``models.common``) and were shadowed
by them; inside ``worker`` the layers import only downwards, the error root at the bottom.
"""

from __future__ import annotations

import ast
import json
import shutil
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest

from worker.models import MODEL_FILE
from worker.testing import clean_env

REPO = Path(__file__).resolve().parents[1]
PACKAGE = REPO / "worker"

#: Layer of each top-level unit of the package; a module may import from lower layers and
#: from its own unit only. ``errors`` is the bottom: it imports nothing of ours.
LAYERS = {
    "errors": 0,
    "collector": 0,
    "allocator": 0,
    "devices": 0,
    "messages": 0,
    "kinds": 0,
    "retry": 0,
    "urls": 1,
    "constants": 1,
    "pipeline_file": 2,
    "roots": 1,
    "signals": 1,
    "web": 1,
    "description": 2,
    "settings": 3,
    "httpd": 3,
    "sinks": 3,
    "ops": 4,
    "models": 5,
    "stages": 6,
    "live": 7,
    "queue": 7,
    "export": 7,
    "cli": 8,
    "testing": 8,
    "__init__": 9,
    "entry": 9,
    "__main__": 10,
}


def _unit(module: str) -> str:
    """``worker.queue.serve`` -> ``queue``; ``worker`` -> ``__init__``."""
    parts = module.split(".")
    return parts[1] if len(parts) > 1 else "__init__"


def _imports(path: Path) -> list[tuple[int, str]]:
    found = []
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            found.append((node.lineno, node.module))
        elif isinstance(node, ast.Import):
            found += [(node.lineno, a.name) for a in node.names]
    return [(line, m) for line, m in found if m == "worker" or m.startswith("worker.")]


def test_imports_point_down_and_errors_sit_at_the_bottom() -> None:
    modules = sorted(PACKAGE.rglob("*.py"))
    units = {_unit(".".join(p.relative_to(REPO).with_suffix("").parts)) for p in modules}
    assert units == set(LAYERS), f"give every unit a layer: {sorted(units ^ set(LAYERS))}"
    upward = []
    for path in modules:
        name = ".".join(path.relative_to(REPO).with_suffix("").parts)
        unit = _unit(name.removesuffix(".__init__"))
        for line, target in _imports(path):
            other = _unit(target)
            if other != unit and LAYERS[other] >= LAYERS[unit]:
                upward.append(f"{path.relative_to(REPO)}:{line} ({unit}) imports {target}")
    assert not upward, "imports must point down:\n" + "\n".join(upward)
    assert not _imports(PACKAGE / "errors.py")


def _built_wheel(tmp_path: Path) -> Path:
    """The wheel ``pip install .`` would build, from the files git tracks (a clean tree)."""
    src = tmp_path / "src"
    listed = subprocess.run(
        ["git", "ls-files", "-z", "--cached", "--others", "--exclude-standard"],
        cwd=REPO, capture_output=True, check=True,
    ).stdout.decode().split("\0")  # fmt: skip
    for rel in filter(None, listed):
        if (REPO / rel).is_file():
            (src / rel).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(REPO / rel, src / rel)
    out = tmp_path / "dist"
    subprocess.run(
        [sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation", "-q",
         "-w", str(out), str(src)],
        check=True, capture_output=True, timeout=300,
    )  # fmt: skip
    (wheel,) = out.glob("*.whl")
    return wheel


def test_the_wheel_holds_one_import_name_and_the_demo_models(tmp_path: Path) -> None:
    wheel = _built_wheel(tmp_path)
    names = zipfile.ZipFile(wheel).namelist()
    top = {n.split("/")[0] for n in names if not n.split("/")[0].endswith(".dist-info")}
    assert top == {"worker"}
    for demo in ("demo-segment", "demo-classify"):
        assert f"worker/models/builtin/{demo}/{MODEL_FILE}" in names
        assert f"worker/models/builtin/{demo}/card.json" in names

    # Installed (into a folder of its own, ahead of the editable checkout) and run elsewhere:
    # the demo works from any directory, and there is no 'models' or 'pipelines' to import.
    site = tmp_path / "site"
    subprocess.run(
        [sys.executable, "-m", "pip", "install", "--no-deps", "-q", "--target", str(site),
         str(wheel)],
        check=True, capture_output=True, timeout=300,
    )  # fmt: skip
    away = tmp_path / "elsewhere"
    away.mkdir()
    env = clean_env({"PYTHONPATH": str(site)})

    def py(*args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [sys.executable, *args], cwd=away, env=env, capture_output=True, text=True, timeout=120
        )

    where = py("-c", "import worker; print(worker.__file__)")
    assert where.stdout.strip().startswith(str(site)), where
    for name in ("models", "pipelines"):
        proc = py("-c", f"import {name}")
        assert proc.returncode == 1 and "ModuleNotFoundError" in proc.stderr, proc.stderr
    assert py("-m", "worker", "sample", "robot.mp4", "--seconds", "1").returncode == 0
    run = py("-m", "worker", "run", "--input", "robot.mp4")
    assert run.returncode == 0, run.stderr
    assert (away / "robot.segment.mp4").stat().st_size > 0
    assert str(site / "worker" / "models" / "builtin" / "demo-segment") in run.stdout


USER_MODELS = '''
from torch import nn


def build(classes: int = 3) -> nn.Module:
    """A user's own tiny segmenter, found as models.common:build (YOLOv5-style layout)."""
    return nn.Sequential(nn.Conv2d(3, 8, 3, padding=1), nn.ReLU(), nn.Conv2d(8, classes, 1))
'''


def test_export_from_a_repository_with_its_own_models_package(tmp_path: Path) -> None:
    # Before: our top-level 'models' hid the user's, and 'worker export' could not import
    # 'models.common' (nor could 'python -m worker' start next to a models/ folder).
    repo = tmp_path / "their-repo"
    (repo / "models").mkdir(parents=True)
    (repo / "models" / "__init__.py").write_text("")
    (repo / "models" / "common.py").write_text(USER_MODELS)
    import torch  # the export extra's: imported by the test that needs it, not the module

    torch.manual_seed(0)
    net = torch.nn.Sequential(
        torch.nn.Conv2d(3, 8, 3, padding=1), torch.nn.ReLU(), torch.nn.Conv2d(8, 3, 1)
    )
    torch.save(net.state_dict(), repo / "best.pth")
    (repo / "labels.txt").write_text("a\nb\nc\n")
    env = clean_env(model_root="zoo")

    def cli(*args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [sys.executable, "-m", "worker", *args],
            cwd=repo, env=env, capture_output=True, text=True, timeout=300,
        )  # fmt: skip

    proc = cli(
        "export", "--factory", "models.common:build", "--weights", "best.pth",
        "--input-shape", "1,3,32,32", "--task", "segment", "--labels", "labels.txt",
        "--output", "theirnet",
    )  # fmt: skip
    assert proc.returncode == 0, proc.stderr
    # A name as --output is a new folder in the model repository, model and card.
    assert (repo / "zoo" / "theirnet" / MODEL_FILE).stat().st_size > 0
    assert (repo / "zoo" / "theirnet" / "card.json").is_file()
    listed = [json.loads(line) for line in cli("models", "--json").stdout.splitlines()]
    mine = next(m for m in listed if m["name"] == "theirnet")
    assert (mine["source"], mine["card"], mine["labels"]) == ("repository", "card", ["a", "b", "c"])
    assert {m["name"] for m in listed} >= {"demo-segment", "demo-classify"}  # built in
    assert cli("sample", "clip.mp4", "--seconds", "1", "--size", "64x48").returncode == 0
    run = cli("run", "--input", "clip.mp4", "--model", "theirnet")
    assert run.returncode == 0, run.stderr


@pytest.mark.parametrize("name", ["models", "pipelines"])
def test_no_code_left_in_the_top_level_folders(name: str) -> None:
    # models/ is a model repository, pipelines/ holds pipeline files: data, not packages.
    assert not list((REPO / name).rglob("*.py"))
