"""The inference container's model server (SageMaker runs ``serve``).

A pre-fork gunicorn server whose workers each run one uvloop event loop around
a bare ASGI app: the model is loaded once in the master, before the workers
fork, so every worker shares its memory copy-on-write. Modules:

- ``config``: the SageMaker environment variables, validated (stdlib only, so
  the socket can be bound before the heavy libraries are imported).
- ``media``: Content-Type and Accept negotiation.
- ``decoders`` / ``encoders``: request bodies to a feature matrix, predictions
  to response bodies.
- ``app``: the ASGI application (routes, limits, errors; large requests on threads).
- ``worker``: gunicorn's asgi worker, made to stop promptly.
- ``memory``: glibc malloc settings, and giving memory back when idle.
- ``server``: process start-up, entry point ``main()``.
"""
