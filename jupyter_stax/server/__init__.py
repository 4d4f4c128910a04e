"""The Jupyter server extension: :class:`~jupyter_stax.server.app.StaxApp` (settings and the
engine's lifecycle), REST handlers, the error map, event schemas and the OpenAPI document.

Nothing is imported here, so ``import jupyter_stax`` stays cheap.
"""
