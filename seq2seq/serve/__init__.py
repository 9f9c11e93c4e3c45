"""The HTTP server: a translation API with dynamic batching, and a demo page (``static/``)."""
