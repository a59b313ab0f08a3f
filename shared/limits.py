"""Request body size limit: a 413 problem before an oversized body is read into memory."""

from __future__ import annotations

from starlette.types import ASGIApp, Message, Receive, Scope, Send

from shared.errors import DomainError, problem


class BodyTooLarge(DomainError):
    status, code, title = 413, "body-too-large", "Request body too large"


class BodySizeLimit:
    """Refuse bodies over ``max_bytes``: by ``Content-Length`` at once, else while streaming."""

    def __init__(self, app: ASGIApp, max_bytes: int) -> None:
        self.app = app
        self.max_bytes = max_bytes

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        declared = dict(scope["headers"]).get(b"content-length")
        if declared is not None and declared.isdigit() and int(declared) > self.max_bytes:
            await self._refuse(scope, receive, send)
            return
        seen = 0
        too_large = False

        async def counted() -> Message:
            nonlocal seen, too_large
            message = await receive()
            if message["type"] == "http.request":
                seen += len(message.get("body", b""))
                if seen > self.max_bytes:
                    too_large = True
                    raise BodyTooLarge(self._detail())
            return message

        replaced = False

        async def reply(message: Message) -> None:
            # Frameworks may wrap the error from receive() in their own 400; the answer is 413.
            nonlocal replaced
            if too_large:
                if not replaced:
                    replaced = True
                    await self._refuse(scope, receive, send)
                return
            await send(message)

        await self.app(scope, counted, reply)

    async def _refuse(self, scope: Scope, receive: Receive, send: Send) -> None:
        response = problem(
            413, code=BodyTooLarge.code, title=BodyTooLarge.title, detail=self._detail()
        )
        await response(scope, receive, send)

    def _detail(self) -> str:
        return f"The request body is larger than {self.max_bytes} bytes"
