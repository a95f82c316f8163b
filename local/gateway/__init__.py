"""A local API Gateway (HTTP API, payload format 2.0) for the routes of template.yaml.

``sam local start-api`` needs Docker; this serves the same routes with plain Python
processes instead. One job per module:

    routes.py      which route a request matches (template.yaml's route keys)
    events.py      the payload 2.0 event a function gets, and what its answer becomes
    authorizer.py  the JWT authorizer and the local token issuer
    cors.py        the API's CorsConfiguration
    pool.py        each function's execution environments, scaled on demand
    processes.py   a function's parent process and forked workers, seen from the gateway
    worker.py      the program they run: the handler imported once, one event at a time
    background.py  Schedule and SQS event sources
    server.py      the HTTP server and how each answer is given
    gateway.py     all of it put together: ``Gateway``
    cli.py         ``python -m local.gateway --template template.yaml --port 3000 ...``

In process (tests)::

    gw = Gateway("template.yaml", "127.0.0.1", 0, env_file=..., parameters={...}).start()
    token = gw.issue_token("user-1", groups=["admin"])
    ...
    gw.stop()

As API Gateway and Lambda would: exact route keys, ``{param}`` and ``{proxy+}``, most
specific first; 404/401/413 with API Gateway's own bodies; a listen backlog of 1024, so
a rush of clients queues instead of being reset; each function's handler imported once
and forked into up to ``concurrency`` workers as requests arrive; a handler error is
500, a crash 502, a function timeout 503, no answer within the 30 s integration timeout
503, an answer over Lambda's 6 MB 500.
"""

from local.gateway.authorizer import AUDIENCE, load_or_create_key, make_token, verify_token
from local.gateway.cli import main
from local.gateway.events import build_event, build_response, flatten_claims, is_text_content_type
from local.gateway.gateway import DEFAULT_MAX_BODY_BYTES, Gateway, PortInUseError, load_env_file
from local.gateway.pool import InvokeResult
from local.gateway.routes import match_route

__all__ = [
    "AUDIENCE",
    "DEFAULT_MAX_BODY_BYTES",
    "Gateway",
    "InvokeResult",
    "PortInUseError",
    "build_event",
    "build_response",
    "flatten_claims",
    "is_text_content_type",
    "load_env_file",
    "load_or_create_key",
    "main",
    "make_token",
    "match_route",
    "verify_token",
]
