"""Rate limits (requests and tokens per minute) and budgets, enforced before a backend call."""
