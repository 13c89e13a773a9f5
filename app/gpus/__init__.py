"""GPUs as they really are: agentless discovery by a probe container, per-GPU health and use."""
