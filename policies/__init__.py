"""Policy files (YAML, written by trust & safety staff) and their loader."""

from policies.loader import LoadedPolicy, PolicyError, load_policy, policy_path  # noqa: F401
