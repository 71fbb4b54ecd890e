"""rlcv: a benchmark and reproduction suite for reinforcement learning in computer vision.

The shared library the methods stand on: metrics, RL building blocks, small models,
the training engine, the report and the `rlcv` command. See DESIGN.md and README.md.
"""

__version__ = "0.1.0"
