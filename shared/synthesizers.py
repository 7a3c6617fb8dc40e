"""Which synthesizer a run trains: the plan names it, and every site and the server build the same one."""

from __future__ import annotations

from shared.ctgan import DPCTGANGenerator, GANConfig
from shared.ctvae import ConditionalTVAEGenerator
from shared.encoding import TableEncoder
from shared.generator import TabularGenerator
from shared.plan import TrainingPlan
from shared.tvae import TVAEGenerator


def build_generator(plan: TrainingPlan, encoder: TableEncoder) -> TabularGenerator:
    """A freshly initialised generator, identical (same seed) wherever the plan is the same."""
    if plan.generator == "gan":
        # The GAN's own conditions stay uniform over categories: no site may use its class frequencies.
        return DPCTGANGenerator(encoder.blocks, encoder.dim, GANConfig(hidden=plan.hidden), seed=plan.seed)
    if plan.generator == "ctvae":
        # The decoder takes each row's own class as input; RunConfig checked the target is categorical.
        target = encoder.schema.target
        if target is None:
            raise ValueError("train.generator='ctvae' conditions on the target, and the schema names none")
        return ConditionalTVAEGenerator(encoder.blocks, encoder.dim, plan.model_config, condition=target,
                                        seed=plan.seed)
    return TVAEGenerator(encoder.blocks, encoder.dim, plan.model_config, seed=plan.seed)
