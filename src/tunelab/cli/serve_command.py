"""``tunelab serve``: parse the command line and hand it to ``tunelab.serve.app.serve``."""

from __future__ import annotations

import argparse

from tunelab.errors import UserError

COMMANDS = ("serve",)
SERVER_PACKAGES = ("starlette", "uvicorn")  # the serve extra


def register(commands: argparse._SubParsersAction) -> None:
    serve = commands.add_parser(
        "serve",
        help="serve models and trained runs over an OpenAI-compatible HTTP API",
        description=(
            "Serve a base model and trained runs over an OpenAI-compatible API (/v1/chat/completions, "
            "/v1/completions, /v1/models, /v1/classify for classification runs, /health). Each is reachable "
            "by its folder's name or by the name given as name=path; adapter runs on the same base share it."
        ),
        epilog="example:\n  tunelab serve smollm2 runs/lora-a runs/lora-b --max-batch 8",
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    serve.add_argument("model", metavar="MODEL_OR_RUN", help="a model (hub id, folder, smollm2) or a run folder")
    serve.add_argument("runs", nargs="*", metavar="RUN", help="more run folders (or name=path)")
    serve.add_argument("--host", default="127.0.0.1", help="address to listen on (default 127.0.0.1)")
    serve.add_argument("--port", type=int, default=8000, help="port to listen on (default 8000)")
    serve.add_argument("--max-batch", type=int, default=8, help="requests generated together at most (default 8)")
    serve.add_argument("--api-key", default=None, help="require Authorization: Bearer KEY on /v1 routes")


def run(args: argparse.Namespace) -> int:
    try:
        from tunelab.serve.app import serve
    except ModuleNotFoundError as error:
        if error.name not in SERVER_PACKAGES:
            raise
        raise UserError(f"tunelab serve needs {error.name}: pip install 'tunelab[serve]'") from None
    serve([args.model, *args.runs], host=args.host, port=args.port, max_batch=args.max_batch, api_key=args.api_key)
    return 0
