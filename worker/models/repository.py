"""The model repository: one folder per model, as in Triton's model repository.

::

    models/                     WORKER_MODEL_ROOT (default: models in the working directory)
      demo-segment/
        model.onnx
        card.json               optional: what the graph cannot say (labels, colours, ...)
      legacy.onnx               the older layout keeps working: a bare model ...
      legacy.json               ... with its card beside it

``--model NAME`` finds ``<root>/NAME/model.onnx`` (or ``<root>/NAME.onnx``); a path to a file
or to a model's folder works too. The demo models ship inside the package as a built-in
repository, so ``demo-segment`` and ``demo-classify`` resolve on any machine; a folder of the
same name in the root comes first.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from worker.errors import ModelError
from worker.kinds import Task
from worker.roots import resolve_inside

__all__ = [
    "CARD_FILE",
    "DEMO_NAMES",
    "MODEL_FILE",
    "RepoEntry",
    "builtin_root",
    "card_path_for",
    "demo_model_path",
    "is_model_name",
    "list_models",
    "resolve_model",
]

MODEL_FILE = "model.onnx"
CARD_FILE = "card.json"
#: Repository name of each task's demo model (built by ``worker.models.demo``).
DEMO_NAMES: dict[str, str] = {"segment": "demo-segment", "classify": "demo-classify"}


def builtin_root() -> Path:
    """The repository shipped with the package (the demo models).

    In a wheel it is ``worker/models/builtin`` (mapped from the source tree's ``models/``); in a
    source checkout or an editable install the files stay where they are, in ``models/``.
    """
    packaged = Path(__file__).parent / "builtin"
    if packaged.is_dir():
        return packaged
    return Path(__file__).resolve().parents[2] / "models"


def card_path_for(model: Path) -> Path:
    """The card that travels with a model: ``x/model.onnx`` -> ``x/card.json``;
    ``x.onnx`` -> ``x.json`` (so a bare ``model.onnx`` keeps a ``model.json`` it already has)."""
    beside = model.with_suffix(".json")
    if model.name == MODEL_FILE:
        folder_card = model.parent / CARD_FILE
        return beside if beside.is_file() and not folder_card.is_file() else folder_card
    return beside


def is_model_name(value: str) -> bool:
    """A repository name (``demo-segment``), not a path (``models/x.onnx``, ``./x``)."""
    return bool(value) and "/" not in value and "\\" not in value and not value.startswith(".")


def _in_root(name: str, root: Path) -> Path | None:
    folder = root / name
    if (folder / MODEL_FILE).is_file():
        return folder / MODEL_FILE
    bare = root / f"{name}.onnx"
    if not name.endswith(".onnx") and bare.is_file():
        return bare
    return None


def resolve_model(value: str | Path, root: Path, *, confined: bool = False) -> Path:
    """The ``.onnx`` file that ``--model value`` means.

    A path to a file is taken as it is; a folder holding ``model.onnx`` gives that file; a name
    is looked up in ``root``, then among the built-in models. ``confined`` (a queued job's
    model): the path must resolve inside ``root`` (symlinks and ``..`` followed, then
    checked; ``JobError`` if not), and a missing file is left for ``load_model`` to name.
    """
    text = str(value)
    if confined:
        return _confined(text, root)
    path = Path(value)
    if path.is_file():
        return path
    if path.is_dir():
        if (path / MODEL_FILE).is_file():
            return path / MODEL_FILE
        if path.suffix == ".onnx":
            raise ModelError(f"model '{text}': is a folder; expected an .onnx file")
        raise ModelError(f"model '{text}': a folder without {MODEL_FILE}; expected a model folder")
    if is_model_name(text):
        found = _in_root(text, root) or _in_root(text, builtin_root())
        if found is not None:
            return found
        if (root / text / MODEL_FILE).is_dir():
            raise ModelError(
                f"model '{text}': '{root / text / MODEL_FILE}' is a folder; expected the "
                "model's .onnx file"
            )
        raise ModelError(
            f"model '{text}': no such file, and no model of that name in the repository "
            f"'{root}' (WORKER_MODEL_ROOT: expected '{root / text / MODEL_FILE}'); "
            "'worker models' lists the models there"
        )
    return path  # a path that does not exist: read_graph says so, naming it


def _confined(text: str, root: Path) -> Path:
    real = resolve_inside(text, root, "model")
    if real.is_dir():
        return real / MODEL_FILE
    if not real.exists() and is_model_name(text):
        bare = resolve_inside(f"{text}.onnx", root, "model")
        if bare.is_file():
            return bare
        builtin = builtin_root() / text / MODEL_FILE
        if builtin.is_file():
            return builtin
    return real


@dataclass(frozen=True)
class RepoEntry:
    """One model in a repository, as ``worker models`` lists it."""

    name: str
    path: Path
    card: Path | None
    builtin: bool


def _entries(root: Path, builtin: bool) -> list[RepoEntry]:
    if not root.is_dir():
        return []
    out: list[RepoEntry] = []
    for child in sorted(root.iterdir()):
        if child.name.startswith("."):
            continue
        if child.is_dir() and (child / MODEL_FILE).is_file():
            model, name = child / MODEL_FILE, child.name
        elif child.is_file() and child.suffix == ".onnx":
            model, name = child, child.stem
        else:
            continue
        card = card_path_for(model)
        out.append(RepoEntry(name, model, card if card.is_file() else None, builtin))
    return out


def list_models(root: Path) -> list[RepoEntry]:
    """The models in ``root``, then the built-in ones it does not shadow, by name."""
    own = _entries(root, builtin=False)
    names = {e.name for e in own}
    shipped = root.resolve() == builtin_root().resolve() if root.is_dir() else False
    extra = [] if shipped else [e for e in _entries(builtin_root(), True) if e.name not in names]
    return own + extra


def demo_model_path(task: Task) -> Path:
    """The built-in demo model for ``task`` (shipped with the package); there is none that
    detects."""
    if task not in DEMO_NAMES:
        raise ModelError(
            f"--task {task}: there is no built-in {task} model; give one with --model "
            "(a YOLO detector's .onnx, for instance)"
        )
    return builtin_root() / DEMO_NAMES[task] / MODEL_FILE
