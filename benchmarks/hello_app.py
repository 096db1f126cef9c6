"""The ceiling for benchmarks/web.py: a bare Starlette endpoint, served like `mailer serve`."""

from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import PlainTextResponse
from starlette.routing import Route


async def hello(request: Request) -> PlainTextResponse:
    return PlainTextResponse("hello")


app = Starlette(routes=[Route("/", hello, methods=["GET", "POST"])])
