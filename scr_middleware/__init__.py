"""scr-middleware: exact, reliable LLM usage capture."""
