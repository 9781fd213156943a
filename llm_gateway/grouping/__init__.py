"""Request grouping: identical in-flight requests share one backend call; answers cached."""
