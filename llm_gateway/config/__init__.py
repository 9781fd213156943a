"""Gateway configuration: one YAML file, ``LLM_GATEWAY__*`` environment overrides, typed result.

Usage::

    from llm_gateway.config import load_config, ConfigError
    config = load_config()  # $LLM_GATEWAY_CONFIG, else the built-in default
"""

from .errors import ConfigError
from .loader import (
    CONFIG_PATH_VAR,
    ENV_PREFIX,
    check_file,
    default_config,
    load_config,
    parse_config,
)
from .schema import (
    Config,
    LocalConfig,
    MetricsConfig,
    ModelRoute,
    RetryConfig,
    RoutingConfig,
    ServerConfig,
    TimeoutConfig,
    UpstreamConfig,
)

__all__ = [
    "CONFIG_PATH_VAR",
    "ENV_PREFIX",
    "Config",
    "ConfigError",
    "LocalConfig",
    "MetricsConfig",
    "ModelRoute",
    "RetryConfig",
    "RoutingConfig",
    "ServerConfig",
    "TimeoutConfig",
    "UpstreamConfig",
    "check_file",
    "default_config",
    "load_config",
    "parse_config",
]
