"""Sampling: the RSGen pipeline (text + metadata + ControlNet, base and super-resolution stages), the
resolution cascade, what-if editing and large georeferenced scenes."""

from rsgen.pipelines.guidance import GuidanceScales, combine_guidance
from rsgen.pipelines.noise import make_generators, per_sample_noise, sample_seeds
from rsgen.pipelines.pipeline import ControlInput, RSGenOutput, RSGenPipeline, Tiling
from rsgen.pipelines.schedulers import SCHEDULER_NAMES, canonical_scheduler_name, make_scheduler

__all__ = [
    "SCHEDULER_NAMES",
    "ControlInput",
    "GuidanceScales",
    "RSGenOutput",
    "RSGenPipeline",
    "Tiling",
    "canonical_scheduler_name",
    "combine_guidance",
    "make_generators",
    "make_scheduler",
    "per_sample_noise",
    "sample_seeds",
]
