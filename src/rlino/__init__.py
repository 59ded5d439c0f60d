"""rlino: outcome-reward post-training of language models, GRPO and Filtered Iterative SFT in one loop."""

__version__ = "0.1.0"
