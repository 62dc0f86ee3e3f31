"""Out-of-process capture: the middleware records, a capture process does the rest.

With ``middleware.offload`` set to ``process`` (or ``auto``, the default, where the setup
allows it), an adapter keeps only references to what it saw of an exchange (request headers
and body, response start, body chunks, timings, the framework user) and hands that record to
an ``Offloader``. A background thread ships records in batches over a socket to a capture
process (``python -m scr_middleware.offload.worker``), which replays each one through the same
``Observer`` the inline path uses, and captures the event into its own router. Parsing,
extraction, normalisation, serialisation and delivery thus run on another core, not under the
host interpreter's GIL. See docs/offload.md.
"""

from __future__ import annotations

from .channel import Offloader, OffloadStats

__all__ = ["OffloadStats", "Offloader"]
