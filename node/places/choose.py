"""Which places provider a node uses, and why (the reason goes in the start-up log).

`auto` (the default) uses Google's Places API (New) when the environment variable named by
`places.api_key_env` holds a key, else the offline provider. `google` and `google-legacy`
require the key. The key itself never appears in a reason or an error.
"""

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
    var = config.api_key_env
    key = env.get(var, "").strip()
    if config.provider == "offline":
        return OfflinePlaces(), "configured: offline"
    if config.provider == "auto":
        if not key:
            return OfflinePlaces(), f"auto: ${var} is not set"
        return _google("google", key, config, f"auto: ${var} is set")
    if config.provider in ("google", "google-legacy"):
        if not key:
            raise ProviderError(
                f"places provider {config.provider!r} needs a Google API key in the environment"
                f" variable {var}, which is not set (or empty)"
            )
        why = f"configured: {config.provider}, ${var} is set"
        return _google(config.provider, key, config, why)
    raise ProviderError(f"places provider {config.provider!r} is not available in this version")


def _google(name: str, key: str, config: PlacesConfig, why: str) -> tuple[PlacesProvider, str]:
    # Imported here: aiohttp takes half of a node's start-up, and offline nodes never need it.
    from node.places.google import GooglePlaces
    from node.places.google_legacy import GoogleLegacyPlaces
    from node.places.http import redact

    kind: type[GooglePlaces] | type[GoogleLegacyPlaces] = (
        GooglePlaces if name == "google" else GoogleLegacyPlaces
    )
    provider = kind(key, endpoint=config.endpoint, timeout=config.timeout)
    reason = f"{why}; endpoint {provider.endpoint}, timeout {config.timeout:g} s"
    return provider, redact(reason, key)
