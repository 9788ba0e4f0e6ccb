"""The PyTorch side of ``worker export``: the network from its factory, its weights, its mode.

Everything here needs torch, imported inside the functions so that ``models`` stays importable
without it (the core install has no torch; ``worker export`` checks for it first).
"""

from __future__ import annotations

import copy
import importlib
import os
import pickle
import sys
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from worker.errors import ExportError

if TYPE_CHECKING:
    import torch
    from torch import nn

__all__ = [
    "WeightsReport",
    "build_network",
    "check_eval_mode",
    "import_factory",
    "load_weights",
    "read_state_dict",
]

#: Keys under which training scripts commonly nest the weights, tried in this order.
_WRAPPERS = ("state_dict", "model_state_dict", "model", "net", "module")
#: Prefixes that wrappers add to every key: DataParallel/DDP, then torch.compile.
_PREFIXES = ("module.", "_orig_mod.")
_SHOWN = 6  # keys listed per kind of mismatch; the rest are counted
#: The one top-level package of this project: a user's package of that name cannot be imported.
_OWN_PACKAGES = ("worker",)


def import_factory(spec: str) -> Callable[..., Any]:
    """``package.module:function`` (or ``:Class``, or ``:obj.attr``) -> the callable.

    The working directory is searched first, as ``python -m`` would: a user runs
    ``worker export --factory mypkg.models:build`` from their project's root.
    """
    module_name, sep, attr = spec.partition(":")
    if not sep or not module_name or not attr:
        raise ExportError(f"--factory '{spec}': expected module:function, e.g. mypkg.models:build")
    cwd = os.getcwd()
    added = cwd not in sys.path
    if added:
        sys.path.insert(0, cwd)
    try:
        module = importlib.import_module(module_name)
    except ModuleNotFoundError as e:
        if e.name is not None and (module_name == e.name or module_name.startswith(e.name + ".")):
            top = module_name.split(".")[0]
            hint = (
                f"'{top}' is also the name of one of this tool's own packages, which hides "
                "yours: import your factory under another name"
                if top in _OWN_PACKAGES
                else "is it on PYTHONPATH or in the working directory?"
            )
            raise ExportError(
                f"--factory '{spec}': cannot import module '{module_name}' (no module named "
                f"'{e.name}'; {hint})"
            ) from e
        raise ExportError(
            f"--factory '{spec}': importing module '{module_name}' failed: {e}"
        ) from e
    except Exception as e:  # the module itself is broken: say where, not just that
        raise ExportError(
            f"--factory '{spec}': importing module '{module_name}' failed: {type(e).__name__}: {e}"
        ) from e
    finally:
        if added:
            sys.path.remove(cwd)
    obj: Any = module
    for i, part in enumerate(attr.split(".")):
        if not hasattr(obj, part):
            owner = ".".join([module_name, *attr.split(".")[:i]])
            raise ExportError(f"--factory '{spec}': module '{owner}' has no attribute '{part}'")
        obj = getattr(obj, part)
    if not callable(obj):
        raise ExportError(
            f"--factory '{spec}': '{attr}' is a {type(obj).__name__}, not a function or class"
        )
    return obj  # type: ignore[no-any-return]  # callable() narrowed it; mypy keeps Any


def build_network(spec: str, kwargs: Mapping[str, Any]) -> nn.Module:
    """Call the factory and check it gave a module."""
    from torch import nn

    factory = import_factory(spec)
    try:
        net = factory(**kwargs)
    except Exception as e:
        raise ExportError(f"--factory '{spec}' raised {type(e).__name__}: {e}") from e
    if not isinstance(net, nn.Module):
        raise ExportError(
            f"--factory '{spec}' returned a {type(net).__name__}; expected a torch.nn.Module"
        )
    return net


def _is_state_dict(obj: object) -> bool:
    import torch

    return (
        isinstance(obj, Mapping)
        and len(obj) > 0
        and all(isinstance(k, str) and isinstance(v, torch.Tensor) for k, v in obj.items())
    )


def read_state_dict(path: Path, *, trust: bool = False) -> tuple[dict[str, torch.Tensor], str]:
    """Read a checkpoint; returns (state dict, where in the file it was found).

    Understands a bare state dict, the usual wrappers (``{"state_dict": ...}``,
    ``{"model": ...}``, nested too) and a whole pickled module. Without ``trust`` the file is
    read with ``weights_only=True``: tensors and plain containers only, no code runs.
    """
    import torch
    from torch import nn

    if not path.is_file():
        raise ExportError(f"weights '{path}': file not found")
    try:
        obj: Any = torch.load(path, map_location="cpu", weights_only=not trust)
    except pickle.UnpicklingError as e:
        first = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
        raise ExportError(
            f"weights '{path}': holds objects other than tensors and plain containers "
            f"({first}); if you trust the file, pass --trust-weights to unpickle it in full"
        ) from e
    except Exception as e:
        raise ExportError(
            f"weights '{path}': not a PyTorch checkpoint ({type(e).__name__}: {e})"
        ) from e
    where = "the file"
    for _ in range(4):  # wrappers can nest: {"model": {"state_dict": ...}}
        if isinstance(obj, nn.Module):
            return dict(obj.state_dict()), f"{where} (a pickled module)"
        if _is_state_dict(obj):
            return dict(obj), where
        if not isinstance(obj, Mapping):
            break
        key = next((k for k in _WRAPPERS if k in obj), None)
        if key is None:
            break
        obj, where = obj[key], f"{where}['{key}']" if where != "the file" else f"['{key}']"
    found = (
        f"a mapping with keys {', '.join(map(repr, list(obj)[:_SHOWN]))}"
        if isinstance(obj, Mapping)
        else f"a {type(obj).__name__}"
    )
    raise ExportError(
        f"weights '{path}': no state dict found in {where}: {found}; expected tensors by "
        f"parameter name, possibly under {' / '.join(repr(k) for k in _WRAPPERS)}"
    )


@dataclass(frozen=True)
class WeightsReport:
    source: str  # where in the file the state dict was
    tensors: int
    stripped: tuple[str, ...]  # key prefixes removed, e.g. ("module.",)


def _count(keys: list[str]) -> str:
    return f"{len(keys)} key" if len(keys) == 1 else f"{len(keys)} keys"


def _listed(keys: list[str]) -> str:
    shown = ", ".join(keys[:_SHOWN])
    return f"{shown}, ... ({len(keys) - _SHOWN} more)" if len(keys) > _SHOWN else shown


def load_weights(net: nn.Module, path: Path, *, spec: str, trust: bool = False) -> WeightsReport:
    """Load ``path`` into ``net`` strictly; a mismatch lists missing, unexpected and
    wrongly shaped keys."""
    state, source = read_state_dict(path, trust=trust)
    expected = net.state_dict()
    stripped: list[str] = []
    for prefix in _PREFIXES * 2:  # DDP around torch.compile: "module._orig_mod."
        if all(k.startswith(prefix) for k in state) and not any(
            k.startswith(prefix) for k in expected
        ):
            state = {k[len(prefix) :]: v for k, v in state.items()}
            stripped.append(prefix)
    # A BatchNorm's step counter does not affect inference; old checkpoints lack it.
    missing = [k for k in expected if k not in state and not k.endswith("num_batches_tracked")]
    unexpected = [k for k in state if k not in expected]
    shapes = [
        f"{k} {list(state[k].shape)} in the file vs {list(v.shape)} in the model"
        for k, v in expected.items()
        if k in state and tuple(state[k].shape) != tuple(v.shape)
    ]
    if missing or unexpected or shapes:
        parts = []
        if missing:
            parts.append(f"missing {_count(missing)}: {_listed(missing)}")
        if unexpected:
            parts.append(f"unexpected {_count(unexpected)}: {_listed(unexpected)}")
        if shapes:
            parts.append(f"{_count(shapes)} with another shape: {_listed(shapes)}")
        raise ExportError(
            f"weights '{path}' do not match the model from '{spec}': {'; '.join(parts)}"
        )
    try:
        net.load_state_dict(state, strict=False)  # strictness checked above, with better words
    except RuntimeError as e:
        raise ExportError(f"weights '{path}': loading failed: {e}") from e
    return WeightsReport(source=source, tensors=len(state), stripped=tuple(stripped))


def _close(a: torch.Tensor, b: torch.Tensor, rtol: float, atol: float) -> tuple[bool, float]:
    """(every element of ``a`` within tolerance of ``b``, as ``worker.export.verify.within``
    judges it; the largest absolute difference)."""
    from worker.export.verify import within

    if a.shape != b.shape:
        return False, float("inf")
    if not a.is_floating_point():
        same = bool((a == b).all())
        return same, 0.0 if same else float("inf")
    if not a.numel():
        return True, 0.0
    a64, b64 = a.double(), b.double()
    return within(b64.numpy(), a64.numpy(), rtol, atol), float((a64 - b64).abs().max())


def _in_float64(
    net: Callable[[torch.Tensor], torch.Tensor], x: torch.Tensor
) -> Callable[[torch.Tensor], torch.Tensor] | None:
    """A float64 copy of ``net`` (None if it cannot run in float64, or ``x`` is not float)."""
    import torch
    from torch import nn

    if not isinstance(net, nn.Module) or not x.is_floating_point():
        return None
    try:
        copy64 = copy.deepcopy(net).double().eval()
        with torch.inference_mode():
            copy64(x[:1].double())
    except Exception:
        return None
    return lambda t: copy64(t.double())


def check_eval_mode(
    net: Callable[[torch.Tensor], torch.Tensor],
    module: nn.Module,
    x: torch.Tensor,
    pair: torch.Tensor | None,
    *,
    rtol: float,
    atol: float,
) -> None:
    """Refuse a network that still behaves as in training after ``eval()``.

    Three checks, each naming what it found:
    1. every submodule has ``training == False`` (a custom ``train()`` can keep one on);
    2. two runs on the same input agree (dropout or other sampling still active);
    3. given ``pair`` (two inputs, for a dynamic batch), a sample's output does not depend on
       the rest of its batch (batch statistics: ``BatchNorm(track_running_stats=False)``,
       ``batch_norm(training=True)``).

    Differences are judged relative to the output's size (``rtol``, ``atol``), and a batch
    dependence is confirmed in float64 before refusing: in float32 a batch of 2 may be
    computed in another order than a batch of 1 and round differently (by ~1e-3 on logits of
    ~1e4), which is arithmetic, not batch statistics; in float64 that rounding all but
    vanishes, while batch statistics stay as large as they were.
    """
    import torch

    still = [
        f"{name or '(root)'} ({type(m).__name__})"
        for name, m in module.named_modules()
        if m.training
    ]
    if still:
        raise ExportError(
            f"model left in training mode: after eval() {len(still)} module(s) still have "
            f"training=True: {_listed(still)} (does a custom train()/eval() override keep "
            "them on?)"
        )
    with torch.inference_mode():
        first, second = net(x), net(x)
        same, diff = _close(first, second, rtol, atol)
        if not same:
            raise ExportError(
                "model left in training mode: two runs on the same input differ by "
                f"{diff:.3g} after eval() (dropout or random sampling called with "
                "training=True in forward?)"
            )
        if pair is None:
            return
        alone, together = net(pair[:1]), net(pair)[:1]
        same, diff = _close(together, alone, rtol, atol)
        if same:
            return
        net64 = _in_float64(net, pair)
        if net64 is not None:
            alone64, together64 = net64(pair[:1]), net64(pair)[:1]
            # Rounding in float64 is ~1e-9 of float32's: a tolerance far below float32's
            # still passes what was only rounding, and nothing batch statistics do.
            same64, diff64 = _close(together64, alone64, rtol * 1e-3, atol * 1e-3)
            if same64:
                return
            diff = diff64
        raise ExportError(
            "model left in training mode: a sample's output changes by "
            f"{diff:.3g} with another sample beside it in the batch (batch statistics: "
            "BatchNorm with track_running_stats=False, or batch_norm(training=True) "
            "in forward?)"
        )
