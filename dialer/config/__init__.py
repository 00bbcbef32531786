"""obzvon's configuration: one TOML file, every table optional, read into frozen models.

`load_settings(None)` (or an empty file) is the demo; `check_config(path)` lists every problem
of a file at once, each as ``key.path[index].field: reason``.
"""

from __future__ import annotations

from dialer.config.loader import ConfigError, check_config, load_settings, parse_settings
from dialer.config.models import (
    RETRY_OUTCOMES,
    AmiServer,
    CampaignSettings,
    CrmSettings,
    DatabaseSettings,
    HttpSettings,
    MqttSettings,
    OperatorSettings,
    RetryPolicy,
    Settings,
)
from dialer.config.window import CallingWindow

__all__ = [
    "RETRY_OUTCOMES",
    "AmiServer",
    "CallingWindow",
    "CampaignSettings",
    "ConfigError",
    "CrmSettings",
    "DatabaseSettings",
    "HttpSettings",
    "MqttSettings",
    "OperatorSettings",
    "RetryPolicy",
    "Settings",
    "check_config",
    "load_settings",
    "parse_settings",
]
