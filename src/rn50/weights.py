"""Model weights: a user's torchvision-style checkpoint, or deterministic ``seeded`` weights.

Seeded weights are for demos and tests only: deterministic initialisation, then BatchNorm statistics
re-estimated on the sample photos. A freshly initialised ResNet predicts one class for every image,
which would make top-1 parity meaningless; with re-estimated statistics outputs depend on the input.
They carry no knowledge of ImageNet: their "classes" mean nothing.
"""

from __future__ import annotations

import hashlib
import logging
import os
import pickle
import zipfile
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from torch import nn

from rn50.errors import UsageError
from rn50.model import VARIANTS, BasicBlock, Bottleneck, ResNet, resnet
from rn50.words import cmd, opt

log = logging.getLogger(__name__)

SEEDED = "seeded"
SEEDED_WEIGHTS = "weights-seeded"  # the manifest names of the weights a work directory keeps: seeded ones,
CHECKPOINT_WEIGHTS = "weights-checkpoint"  # and a user's --weights (its state dict, as loaded)


def kept_weights_name(source: str) -> str:
    """The manifest name of the weights a work directory keeps for a model made from ``source``."""
    return SEEDED_WEIGHTS if source == SEEDED else CHECKPOINT_WEIGHTS


SEED = 0
BN_CROPS = 16
RESIDUAL_GAIN = 0.1


@dataclass(frozen=True)
class LoadedModel:
    model: ResNet
    source: str  # "seeded" or the checkpoint path
    fingerprint: str  # sha256 over the state dict's tensors


def state_fingerprint(model: nn.Module) -> str:
    h = hashlib.sha256()
    for key, value in sorted(model.state_dict().items()):
        h.update(key.encode())
        h.update(str(tuple(value.shape)).encode())
        h.update(value.detach().cpu().contiguous().numpy().tobytes())
    return h.hexdigest()


def seeded_model(depth: int = 50, *, seed: int = SEED) -> ResNet:
    """Deterministic init, then BatchNorm running statistics measured on sample-photo crops."""
    from rn50.samples import sample_crops

    torch.manual_seed(seed)
    model = resnet(depth)
    # Small residual branches (the last BatchNorm of each block scaled to 0.1, in the spirit of
    # zero_init_residual): a random deep network with unit-gain branches is chaotic — a small
    # perturbation grows layer after layer — so INT8 and FP16 errors would explode in a way they do
    # not in trained networks, and parity numbers on demo weights would mislead.
    for block in model.modules():
        if isinstance(block, (Bottleneck, BasicBlock)):
            last_bn = block.bn3 if isinstance(block, Bottleneck) else block.bn2
            nn.init.constant_(last_bn.weight, RESIDUAL_GAIN)
    bns = [m for m in model.modules() if isinstance(m, nn.BatchNorm2d)]
    for bn in bns:
        bn.reset_running_stats()
        bn.momentum = None  # cumulative average over the pass
    crops = torch.from_numpy(sample_crops(BN_CROPS, split="weights"))
    pooled: list[torch.Tensor] = []
    hook = model.avgpool.register_forward_hook(lambda _m, _i, out: pooled.append(torch.flatten(out, 1)))
    model.train()
    threads = torch.get_num_threads()
    torch.set_num_threads(1)  # the statistics must not depend on the caller's thread count (bit-identical weights)
    try:
        with torch.no_grad():
            model(crops)  # one batch: eval mode then reproduces what train mode computed
            hook.remove()
            for bn in bns:
                bn.momentum = 0.1
            # Centre the classifier on the same crops: without it one class dominates every image
            # (pooled features are all positive), and top-1 agreement would measure little.
            model.fc.bias -= model.fc(pooled[0]).mean(0)
    finally:
        torch.set_num_threads(threads)
    return model.eval()


# --- the seeded weights, cached on disk -----------------------------------------------------------
CACHE_ENV = "RN50_CACHE_DIR"
SEEDED_RECIPE = 1  # bump when seeded_model() changes what it builds


def cache_dir() -> Path:
    """Where rn50 caches what it can rebuild: $RN50_CACHE_DIR, else $XDG_CACHE_HOME/rn50, else ~/.cache/rn50."""
    if os.environ.get(CACHE_ENV):
        return Path(os.environ[CACHE_ENV])
    return Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache") / "rn50"


def seeded_cache_path(depth: int, seed: int = SEED) -> Path:
    """One file per depth, seed, recipe and torch version (another torch may round the statistics differently)."""
    return cache_dir() / f"seeded-resnet{depth}-seed{seed}-recipe{SEEDED_RECIPE}-torch{torch.__version__}.pt"


def _read_cached(path: Path, depth: int) -> LoadedModel | None:
    """The cached seeded model if the file is whole and its tensors hash to the fingerprint stored with them."""
    try:
        saved = torch.load(path, map_location="cpu", weights_only=True)
        model = resnet(depth)
        model.load_state_dict(saved["state_dict"], strict=True)
    except (
        OSError,
        RuntimeError,
        EOFError,
        KeyError,
        TypeError,
        ValueError,
        pickle.UnpicklingError,
        zipfile.BadZipFile,
    ) as e:
        log.warning("rebuilding the seeded weights: the cached copy %s is unreadable (%s)", path, type(e).__name__)
        return None
    fingerprint = state_fingerprint(model)
    if fingerprint != saved.get("fingerprint"):
        log.warning("rebuilding the seeded weights: the cached copy %s does not match its fingerprint", path)
        return None
    return LoadedModel(model.eval(), SEEDED, fingerprint)


def _write_cache(path: Path, loaded: LoadedModel) -> None:
    from rn50.artifacts import atomic_path

    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        with atomic_path(path) as tmp:
            torch.save({"fingerprint": loaded.fingerprint, "state_dict": loaded.model.state_dict()}, tmp)
    except (
        OSError,
        UsageError,
    ) as e:  # a read-only home or a full disk: the cache is an optimisation, never a requirement
        log.info("not caching the seeded weights in %s (%s)", path.parent, e)


def seeded(depth: int = 50, *, seed: int = SEED) -> LoadedModel:
    """The seeded model: from the cache when a whole copy for this torch is there, else built (and cached)."""
    path = seeded_cache_path(depth, seed)
    if path.is_file():
        cached = _read_cached(path, depth)
        if cached is not None:
            return cached
    model = seeded_model(depth, seed=seed)
    loaded = LoadedModel(model, SEEDED, state_fingerprint(model))
    _write_cache(path, loaded)
    return loaded


# The start of torch.save's format before PyTorch 1.6 (``_use_new_zipfile_serialization=False``): pickle protocol 2,
# then torch's magic number 0x1950a86a20f9469cfc6c as a 10-byte long.
LEGACY_MAGIC = b"\x80\x02\x8a\x0a" + (0x1950A86A20F9469CFC6C).to_bytes(10, "little")


def check_source(weights: str | Path) -> None:
    """The cheap checks of --weights, made before any work (and again when the weights are read)."""
    if str(weights) == SEEDED:
        return
    if "://" in str(weights):
        raise UsageError(
            f"{opt('weights')} {weights} is a URL: rn50 never downloads weights",
            fix="download the checkpoint yourself and pass its local path",
        )
    path = Path(weights)
    if not path.exists():
        raise UsageError(
            f"weights file not found: {path}", fix=f"pass an existing .pth file or {opt('weights')} seeded"
        )
    if path.is_dir():
        raise UsageError(f"weights path is a directory: {path}", fix="pass the checkpoint file itself")
    if not path.is_file():  # a device (/dev/zero would be read to the end), a FIFO (would block), a socket
        raise UsageError(
            f"weights path is not a regular file: {path}",
            fix="pass the checkpoint file itself (save it to disk first if it comes from a pipe or a device)",
        )
    try:
        with zipfile.ZipFile(path) as archive:
            names = archive.namelist()
    except zipfile.BadZipFile:
        with path.open("rb") as f:
            if f.read(len(LEGACY_MAGIC)) == LEGACY_MAGIC:
                return  # torch.save's format before PyTorch 1.6: torch.load reads it (weights only) as well
        raise UsageError(
            f"{path} is not a torch.save file (neither its zip archive nor its pre-1.6 format: truncated, or "
            "another format)",
            fix="re-download it, or re-save it with torch.save(model.state_dict(), PATH)",
        ) from None
    if any(n.endswith("/constants.pkl") or "/code/" in n for n in names):
        raise UsageError(
            f"{path} is a TorchScript module (torch.jit.save), not a state dict",
            fix="save its weights: torch.save(torch.jit.load(PATH).state_dict(), 'weights.pth'), and pass that file",
        )


def _read_checkpoint(path: Path) -> Mapping[str, object]:
    check_source(path)
    try:
        # weights_only: a checkpoint is data; rn50 never runs code pickled into it.
        obj = torch.load(path, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError as e:
        raise UsageError(
            f"{path} holds pickled Python objects, not only tensors (a whole nn.Module?)",
            fix="re-save the weights with torch.save(model.state_dict(), PATH)",
        ) from e
    except (RuntimeError, EOFError, OSError, zipfile.BadZipFile, ValueError) as e:
        reason = str(e).strip().splitlines()[0][:160] if str(e).strip() else type(e).__name__
        raise UsageError(
            f"could not read {path} as a PyTorch checkpoint ({reason})",
            fix="the file may be truncated or corrupt; re-download it or re-save it with "
            "torch.save(model.state_dict(), PATH)",
        ) from e
    if isinstance(obj, Mapping):
        for key in ("state_dict", "model"):
            inner = obj.get(key)
            if isinstance(inner, Mapping):
                log.info("using the state dict stored under %r in %s", key, path)
                obj = inner
                break
    if not isinstance(obj, Mapping) or not obj or not all(isinstance(v, torch.Tensor) for v in obj.values()):
        raise UsageError(
            f"{path} holds no state dict (got {type(obj).__name__})",
            fix="save the weights with torch.save(model.state_dict(), PATH), or a dict with them under 'state_dict' "
            "or 'model'",
        )
    return _strip_prefix(obj, path)


# The prefixes training code puts before every key of a model's state dict: DataParallel/DDP (``module.``),
# torch.compile (``_orig_mod.``), Lightning modules and wrappers that hold the network as an attribute.
WRAPPER_PREFIXES = ("module.", "_orig_mod.", "model.", "net.", "backbone.")


def _strip_prefix(state: Mapping[str, object], path: Path) -> Mapping[str, object]:
    """``state`` without the wrapper prefixes shared by every key (repeatedly: ``module._orig_mod.``), said in the
    log. A prefix on only some keys is left alone: the strict load then names the keys that do not fit."""
    stripped: list[str] = []
    while True:
        shared = [p for p in WRAPPER_PREFIXES if all(str(k).startswith(p) for k in state)]
        if not shared:
            break
        prefix = shared[0]
        state = {str(k)[len(prefix) :]: v for k, v in state.items()}
        stripped.append(prefix)
    if stripped:
        log.warning("%s: removed the prefix %r shared by every key (a training wrapper's)", path, "".join(stripped))
    return state


def _shared_prefixes(keys: list[str]) -> list[str]:
    """Every dotted prefix all ``keys`` share, shortest first (``pre.``, ``pre.encoder.``), each leaving every key at
    least one part of its own."""
    parts = [k.split(".") for k in keys]
    shortest = min(len(p) for p in parts) - 1
    out = []
    for n in range(1, shortest + 1):
        if len({tuple(p[:n]) for p in parts}) != 1:
            break
        out.append(".".join(parts[0][:n]) + ".")
    return out


def _strip_fitting_prefix(
    state: Mapping[str, object], depth: int, path: Path
) -> tuple[Mapping[str, object], nn.Module] | None:
    """``state`` without a prefix every key shares, and the ResNet-``depth`` it fits exactly (any prefix: the known
    wrappers' are removed before this); None where no prefix does. Mixed prefixes are not guessed at."""
    keys = [str(k) for k in state]
    for prefix in _shared_prefixes(keys):
        candidate = {k[len(prefix) :]: v for k, v in state.items()}
        model = resnet(depth, num_classes=class_count(candidate))
        if _mismatch_report(model, candidate) is None:
            log.warning(
                "%s: removed the prefix %r shared by every key (the rest is ResNet-%d exactly)", path, prefix, depth
            )
            return candidate, model
    return None


def class_count(state: Mapping[str, object]) -> int:
    """The classes a state dict's classifier has (a fine-tuned head keeps its own), else ImageNet's 1000."""
    fc = state.get("fc.weight")
    return int(fc.shape[0]) if isinstance(fc, torch.Tensor) and fc.ndim == 2 else 1000


def guess_depth(state: Mapping[str, object]) -> int | None:
    """The ResNet depth whose keys a state dict has, if any."""
    blocks = []
    for i in range(1, 5):
        idx = {int(k.split(".")[1]) for k in state if k.startswith(f"layer{i}.") and k.split(".")[1].isdigit()}
        blocks.append(max(idx) + 1 if idx else 0)
    bottleneck = any(k.endswith("conv3.weight") for k in state)
    for depth, v in VARIANTS.items():
        if tuple(blocks) == v.layers and (v.block.expansion == 4) == bottleneck:
            return depth
    return None


def _mismatch_report(model: nn.Module, state: Mapping[str, torch.Tensor]) -> str | None:
    own = model.state_dict()
    missing = [k for k in own if k not in state]
    unexpected = [k for k in state if k not in own]
    shapes = [
        f"{k} {tuple(state[k].shape)} in the file, {tuple(own[k].shape)} in the model"
        for k in own
        if k in state and tuple(state[k].shape) != tuple(own[k].shape)
    ]
    if not (missing or unexpected or shapes):
        return None

    def few(items: list[str]) -> str:
        return ", ".join(items[:3]) + (f" (+{len(items) - 3} more)" if len(items) > 3 else "")

    parts = []
    if missing:
        parts.append(f"{len(missing)} missing keys: {few(missing)}")
    if unexpected:
        parts.append(f"{len(unexpected)} unexpected keys: {few(unexpected)}")
    if shapes:
        parts.append(f"{len(shapes)} shape mismatches: {few(shapes)}")
    return "; ".join(parts)


def load_model(weights: str | Path = SEEDED, *, depth: int = 50) -> LoadedModel:
    """Build ResNet-``depth`` and load ``weights`` strictly (``"seeded"`` or a checkpoint path)."""
    if str(weights) == SEEDED:
        return seeded(depth)
    check_source(weights)
    path = Path(weights)
    state = _read_checkpoint(path)
    model = resnet(depth, num_classes=class_count(state))
    problem = _mismatch_report(model, state)
    if problem and (fitted := _strip_fitting_prefix(state, depth, path)) is not None:
        (state, model), problem = fitted, None
    if problem:
        guessed = guess_depth(state)
        hint = (
            f"these look like ResNet-{guessed} weights: pass {opt('depth')} {guessed}"
            if guessed and guessed != depth
            else f"pass a torchvision-style ResNet-{depth} state dict"
        )
        raise UsageError(f"{path} does not fit ResNet-{depth}: {problem}", fix=hint)
    model.load_state_dict(state, strict=True)
    model.eval()
    return LoadedModel(model, str(path), state_fingerprint(model))


def workdir_model(workdir: Any) -> nn.Module:
    """The PyTorch model a work directory's artifacts were made from (its weights re-checked)."""
    record = workdir.manifest().get("model")
    if not record:
        raise UsageError(f"{workdir.manifest_path} names no model", fix=f"run {cmd('export', out='DIR')} first")
    kept = kept_weights_name(record["weights"])
    if workdir.artifact(kept) is not None:
        _, path = workdir.require(kept)  # the exact weights, checked against the manifest
        state = torch.load(path, map_location="cpu", weights_only=True)
        model = resnet(record["depth"], num_classes=class_count(state))
        model.load_state_dict(state, strict=True)
        loaded = LoadedModel(model.eval(), record["weights"], state_fingerprint(model))
    else:
        loaded = load_model(record["weights"], depth=record["depth"])
    if loaded.fingerprint != record["weights_sha256"]:
        raise UsageError(
            f"the weights {record['weights']} changed since the artifacts were made",
            fix=f"re-run {cmd('export')} with these weights, or restore the original file",
        )
    return loaded.model
