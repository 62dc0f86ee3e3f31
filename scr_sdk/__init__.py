"""Alias so the integration guide's samples run unchanged: ``from scr_sdk import
SessionCompletionRuntime``. Everything here is ``scr_middleware``'s public API."""

from scr_middleware import *  # noqa: F403
from scr_middleware import __all__ as __all__
