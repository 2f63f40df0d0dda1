"""mmreward: thinking multimodal reward models.

Core library: the judging protocol (:mod:`mmreward.protocol`), the verdict parser (:mod:`mmreward.verdict`),
tools (:mod:`mmreward.tools`), media (:mod:`mmreward.media`), model loading (:mod:`mmreward.modeling`), the
offline tiny model (:mod:`mmreward.tiny`), engine settings (:mod:`mmreward.settings`), generators
(:mod:`mmreward.generators`), trajectories (:mod:`mmreward.trajectory`), the agentic engine (:mod:`mmreward.rollout`)
and the judge (:mod:`mmreward.judge`). Heavy dependencies (torch, transformers) are imported where they are used.
"""

__version__ = "0.1.0"
