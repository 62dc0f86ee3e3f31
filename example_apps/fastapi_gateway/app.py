"""The FastAPI gateway. Its code lives in the package (``scr demo`` serves it), see
``scr_middleware/examples/gateway_fastapi.py``: the one line is
``app.add_middleware(SessionCompletionMiddleware)``."""

from scr_middleware.examples.gateway_fastapi import create_app

app = create_app()
