"""The former name of `distill.rl.transformers_rollout`, kept while distill/kd/onpolicy.py still imports it.

Delete this file once kd imports `distill.rl.transformers_rollout`.
"""
from distill.rl.transformers_rollout import RolloutCopy, policy_weights

__all__ = ["RolloutCopy", "policy_weights"]
