"""Where WHATSAT answers come from: one module per places provider.

Importing this package is cheap; the offline provider reads its data only when asked.
"""

from node.places.base import PlacesProvider, failure_response, success_response
from node.places.offline import OfflinePlaces

__all__ = ["OfflinePlaces", "PlacesProvider", "failure_response", "success_response"]
