"""Runnable examples: a fake OpenAI-compatible upstream and a FastAPI gateway in front of it.

Used by ``scr demo`` and by the example apps in ``example_apps/``; nothing here is imported by
the middleware itself.
"""
