"""Microsoft Graph access: transports, client, credentials, connection and tenant observation.

The only part of the package (with the emulator) that does network I/O.
"""

from reconciler.graph.client import (
    DEFAULT_GRAPH_URL,
    BatchRequest,
    BatchResponse,
    GraphClient,
    WriteRecord,
)
from reconciler.graph.transport import ReadOnlyTransport, RequestStats, RetryingTransport, RetryPolicy

__all__ = [
    "DEFAULT_GRAPH_URL",
    "BatchRequest",
    "BatchResponse",
    "GraphClient",
    "ReadOnlyTransport",
    "RequestStats",
    "RetryPolicy",
    "RetryingTransport",
    "WriteRecord",
]
