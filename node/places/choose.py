"""Which places provider a node uses, and why (the reason goes in the start-up log)."""

from __future__ import annotations

import os
from collections.abc import Mapping

from node.config import PlacesConfig
from node.places.base import PlacesProvider
from node.places.offline import OfflinePlaces


class ProviderError(Exception):
    """The configured provider cannot be used; the message says what to change."""


def choose_provider(
    config: PlacesConfig, env: Mapping[str, str] = os.environ
) -> tuple[PlacesProvider, str]:
    """The provider named by `config` (resolving `auto`), and a one-line reason."""
    has_key = bool(env.get(config.api_key_env))
    if config.provider == "offline":
        return OfflinePlaces(), "configured: offline"
    if config.provider == "auto":
        if has_key:
            return OfflinePlaces(), (
                f"auto: ${config.api_key_env} is set but the Google providers are not built yet"
            )
        return OfflinePlaces(), f"auto: ${config.api_key_env} is not set"
    raise ProviderError(f"places provider {config.provider!r} is not available in this version")
