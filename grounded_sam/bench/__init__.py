"""Benchmark: our pipeline against the demo-style Florence-2 + SAM2 reference and the models' floor.

``python -m grounded_sam.bench`` runs, in one process and alternating:

1. per-image latency of :class:`~grounded_sam.pipeline.GroundedSAM2` and of
   :class:`~grounded_sam.bench.reference.ReferencePipeline` (one 3-beam ``generate`` per
   category, one SAM2 ``predict`` per box), stage by stage, and their ratio;
2. the floor (:mod:`grounded_sam.bench.floor`): what the models themselves cost for the image,
   and our overhead over it;
3. refinement: one click against a fresh run (:mod:`grounded_sam.bench.refinement`);
4. a folder run: images per second, overhead over the floor, peak memory per image.

Module map: ``scenarios`` (what is asked), ``models`` (which weights, random ones cached),
``reference``, ``floor``, ``folder``, ``memory``, ``refinement``, ``runner`` (the rounds),
``report`` (table, targets, JSON), ``cli``.
"""

from grounded_sam.bench.runner import BenchConfig, run_benchmark
from grounded_sam.bench.scenarios import Scenario, parse_scenarios

__all__ = ["BenchConfig", "Scenario", "parse_scenarios", "run_benchmark"]
