"""WSGI adapter tests: the shared fixtures live in wsgi_kit (the Flask and Django tests use
them too)."""

from wsgi_kit import captured, internal_errors_raise

__all__ = ["captured", "internal_errors_raise"]
