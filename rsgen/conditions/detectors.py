"""Image conditions from controlnet-aux detectors: Canny, line art and content shuffle work offline; HED, PiDiNet,
M-LSD, MiDaS and NormalBAE need the lllyasviel/Annotators weight files in a local folder."""

from __future__ import annotations

import functools
import os
import warnings
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from rsgen.conditions.registry import CONDITION_TYPES, register_condition
from rsgen.conditions.sources import resize
from rsgen.errors import WeightsNotFoundError

ANNOTATORS_ENV = "RSGEN_ANNOTATORS"  # default folder of lllyasviel/Annotators weight files


@functools.cache
def _aux(module: str, cls: str) -> Any:
    """A controlnet-aux detector class or helper; imported lazily (the package is slow and noisy to import)."""
    import importlib

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return getattr(importlib.import_module(f"controlnet_aux.{module}"), cls)


def _resolution(rgb: np.ndarray, size: tuple[int, int], detect_resolution: int | None) -> int:
    """Detection size (short side): the coarser of the source and the output, at least 64 px."""
    return detect_resolution or max(64, min(*rgb.shape[:2], *size))


def _detect(
    detector: Callable[..., np.ndarray],
    rgb: np.ndarray,
    size: tuple[int, int],
    detect_resolution: int | None,
    **kwargs: Any,
) -> np.ndarray:
    """Run a controlnet-aux detector at the coarser of the source and output resolutions, then resize.

    controlnet-aux would upsample to 512 px by default, which blurs 64-256 px remote-sensing tiles and
    leaves Canny with few edges; detecting near the tile's own resolution keeps them.
    """
    res = _resolution(rgb, size, detect_resolution)
    out = _aux("util", "HWC3")(np.asarray(detector(rgb, detect_resolution=res, output_type="np", **kwargs)))
    return resize(out, size)


def auto_canny_thresholds(
    rgb: np.ndarray, percentile: float = 90.0, floor: float = 40.0
) -> tuple[float, float]:
    """Canny (low, high) from the image's own gradients: high = the ``percentile`` of the Sobel L1 gradient
    magnitude (max over channels), at least ``floor`` so flat scenes (water) stay empty; low = 0.4 * high."""
    import cv2

    mag = np.zeros(rgb.shape[:2], np.float32)
    for c in range(rgb.shape[2]):
        gx = cv2.Sobel(rgb[:, :, c], cv2.CV_32F, 1, 0)
        gy = cv2.Sobel(rgb[:, :, c], cv2.CV_32F, 0, 1)
        mag = np.maximum(mag, np.abs(gx) + np.abs(gy))
    high = max(floor, float(np.percentile(mag, percentile)))
    return 0.4 * high, high


@register_condition("canny", "image", "Canny edges (controlnet-aux), thresholds adapted to the tile")
def canny(
    rgb: np.ndarray,
    size: tuple[int, int],
    *,
    low_threshold: float | None = None,
    high_threshold: float | None = None,
    detect_resolution: int | None = None,
) -> np.ndarray:
    """Canny edge map. Thresholds default to :func:`auto_canny_thresholds` of the image at detection size."""
    res = _resolution(rgb, size, detect_resolution)
    if low_threshold is None or high_threshold is None:
        auto_low, auto_high = auto_canny_thresholds(_aux("util", "resize_image")(rgb, res))
        low_threshold = auto_low if low_threshold is None else low_threshold
        high_threshold = auto_high if high_threshold is None else high_threshold
    detector = _aux("canny", "CannyDetector")()
    return _detect(
        detector,
        rgb,
        size,
        res,
        image_resolution=res,
        low_threshold=low_threshold,
        high_threshold=high_threshold,
    )


@register_condition("lineart", "image", "standard line art (controlnet-aux LineartStandardDetector)")
def lineart(
    rgb: np.ndarray,
    size: tuple[int, int],
    *,
    gaussian_sigma: float | None = None,
    intensity_threshold: int = 8,
    detect_resolution: int | None = None,
) -> np.ndarray:
    """Line art; ``gaussian_sigma`` defaults to controlnet-aux's 6 px at 512 px, scaled to the detection size."""
    res = _resolution(rgb, size, detect_resolution)
    sigma = gaussian_sigma if gaussian_sigma is not None else max(1.0, 6.0 * res / 512)
    detector = _aux("lineart_standard", "LineartStandardDetector")()
    return _detect(detector, rgb, size, res, guassian_sigma=sigma, intensity_threshold=intensity_threshold)


@register_condition("shuffle", "image", "content shuffle (controlnet-aux ContentShuffleDetector), seeded")
def shuffle(
    rgb: np.ndarray,
    size: tuple[int, int],
    *,
    seed: int = 0,
    f: int | None = None,
    detect_resolution: int | None = None,
) -> np.ndarray:
    """Randomly warped image; ``seed`` makes it repeatable, ``f`` (noise scale, px) defaults to half the size."""
    res = _resolution(rgb, size, detect_resolution)
    detector = _aux("shuffle", "ContentShuffleDetector")()
    state = np.random.get_state()  # controlnet-aux draws from numpy's global generator
    try:
        np.random.seed(seed)
        return _detect(detector, rgb, size, res, image_resolution=res, f=f or max(8, res // 2))
    finally:
        np.random.set_state(state)


def find_annotators(folder: str | os.PathLike | None, kind: str, files: Sequence[str]) -> Path:
    """The folder holding lllyasviel/Annotators files for ``kind``, or WeightsNotFoundError naming what is missing."""
    where = folder or os.environ.get(ANNOTATORS_ENV)
    if not where:
        raise WeightsNotFoundError(
            f"condition {kind!r} needs {', '.join(files)} from lllyasviel/Annotators; pass annotators_dir= "
            f"or set ${ANNOTATORS_ENV} to a local folder holding them (rsgen never downloads weights)"
        )
    path = Path(where)
    missing = [f for f in files if annotator_file(path, f) is None]
    if missing:
        raise WeightsNotFoundError(
            f"condition {kind!r}: {', '.join(missing)} not found in {path} (expected lllyasviel/Annotators "
            "files, or .safetensors conversions of them)"
        )
    return path


def annotator_file(folder: Path, name: str) -> Path | None:
    """The annotator weight file ``name`` in ``folder``, preferring a ``.safetensors`` conversion of it."""
    for candidate in (folder / Path(name).with_suffix(".safetensors").name, folder / name):
        if candidate.is_file():
            return candidate
    return None


@functools.lru_cache(maxsize=4)
def _weighted_detector(kind: str, folder: str) -> Any:
    """A controlnet-aux detector with its weights read safely: a ``.safetensors`` file with safetensors,
    a pickle with ``weights_only=True`` forced (see :func:`rsgen.safety.restricted_torch_load`)."""
    from rsgen.safety import restricted_torch_load

    module, cls, files, _help, container = _WEIGHTED[kind]
    weights = annotator_file(Path(folder), files[0])
    assert weights is not None  # find_annotators checked
    with restricted_torch_load(container):
        return _aux(module, cls).from_pretrained(folder, filename=weights.name, local_files_only=True)


def _weighted_maker(kind: str) -> Callable[..., np.ndarray]:
    def make(
        rgb: np.ndarray,
        size: tuple[int, int],
        *,
        annotators_dir: str | None = None,
        detect_resolution: int | None = None,
        **kwargs: Any,
    ) -> np.ndarray:
        folder = find_annotators(annotators_dir, kind, CONDITION_TYPES[kind].weights)
        detector = _weighted_detector(kind, str(folder))
        res = _resolution(rgb, size, detect_resolution)
        return _detect(detector, rgb, size, res, image_resolution=res, **kwargs)

    make.__doc__ = f"{kind} map from controlnet-aux with local lllyasviel/Annotators weights."
    return make


# (controlnet-aux module, class, weight files, help, key under which controlnet-aux expects the state dict in
# the checkpoint: a .safetensors conversion holds the bare state dict)
_WEIGHTED: dict[str, tuple[str, str, tuple[str, ...], str, str | None]] = {
    "hed": ("hed", "HEDdetector", ("ControlNetHED.pth",), "HED soft edges", None),
    "pidi": ("pidi", "PidiNetDetector", ("table5_pidinet.pth",), "PiDiNet soft edges", "state_dict"),
    "mlsd": ("mlsd", "MLSDdetector", ("mlsd_large_512_fp32.pth",), "M-LSD straight lines", None),
    "midas": ("midas", "MidasDetector", ("dpt_hybrid-midas-501f0c75.pt",), "MiDaS relative depth", None),
    "normalbae": ("normalbae", "NormalBaeDetector", ("scannet.pt",), "NormalBAE surface normals", "model"),
}
for _kind, (_m, _c, _files, _help, _key) in _WEIGHTED.items():
    register_condition(_kind, "image", f"{_help} (needs {', '.join(_files)})", weights=_files)(
        _weighted_maker(_kind)
    )


def convert_annotators(folder: str | os.PathLike) -> list[Path]:
    """Write a ``.safetensors`` copy beside every lllyasviel/Annotators pickle rsgen knows in ``folder`` (those
    without one yet), reading each with ``weights_only=True`` so that a crafted file cannot run code; returns
    the files written. rsgen then reads the copies and never the pickles."""
    import torch
    from safetensors.torch import save_file

    from rsgen.io import atomic_path

    path = Path(folder)
    if not path.is_dir():
        raise WeightsNotFoundError(f"annotator folder not found: {path}")
    written = []
    for _module, _cls, files, _help, container in _WEIGHTED.values():
        for name in files:
            source, target = path / name, path / Path(name).with_suffix(".safetensors").name
            if not source.is_file() or target.is_file():
                continue
            try:
                state = torch.load(source, map_location="cpu", weights_only=True)
            except Exception as e:  # weights-only unpickling refused it, or it is not a torch file
                raise WeightsNotFoundError(
                    f"{source}: not a plain tensor file ({str(e).splitlines()[0][:120]}); not converted"
                ) from None
            if container and isinstance(state, dict) and container in state:
                state = state[container]
            tensors = {k: v.contiguous().clone() for k, v in state.items() if isinstance(v, torch.Tensor)}
            if not tensors:
                raise WeightsNotFoundError(f"{source}: holds no tensors; not converted")
            with atomic_path(target) as tmp:
                save_file(tensors, str(tmp))
            written.append(target)
    return written
