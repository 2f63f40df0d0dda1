"""The embedded default: what it takes to train a judge from random weights on 2 CPU cores.

A real user starts from a pretrained Qwen-VL checkpoint; the tiny model starts from nothing, so before the general
stages (``data_pipelines``, ``train``, ``eval``) it needs what pretraining would have given it. This package holds
that scaffolding and nothing else imports it:

* :mod:`mmreward_tiny.curriculum`: learning-to-see data drawn from the synthetic world (captions and questions,
  text-only lookup and comparison rows, one-crop rows, dense per-token labels for the vision tower);
* :mod:`mmreward_tiny.vision` (vision pretraining) and :mod:`mmreward_tiny.see` (stage 0, learning to see: the
  general SFT trainer on those rows, plus a perception evaluation);
* :mod:`mmreward_tiny.probe` and ``curriculum.diagnose``: where the tiny judge's trajectories go wrong;
* :mod:`mmreward_tiny.pipeline` and :mod:`mmreward_tiny.report`: ``mmreward pipeline``, every stage end to end, and
  its report.

Its commands (``mmreward pipeline``, ``mmreward tiny ...``) plug into the one CLI through the same entry-point group
as the other layers.
"""
