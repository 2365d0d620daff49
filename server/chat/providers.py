"""The interface every answer provider implements, and the choice of provider by LLM_PROVIDER."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Protocol

import httpx

from server.chat.tools import Toolbox
from server.settings import Settings


@dataclass(frozen=True)
class Turn:
    """A question and the earlier messages of its session, oldest first, as {"role", "content"}."""

    question: str
    history: list[dict]


class AnswerWriter(Protocol):
    """Where a provider sends the answer as it is produced."""

    async def delta(self, text: str) -> None: ...

    async def citation(self, citation: dict) -> None: ...

    def add_usage(self, **counts: int) -> None: ...


class Provider(Protocol):
    name: str

    async def answer(self, turn: Turn, tools: Toolbox, writer: AnswerWriter) -> None:
        """Answer `turn` with `tools`, sending text and citations to `writer`."""


class ProviderError(Exception):
    """An answer provider failed; `code` and `message` become the stream's `error` event."""

    def __init__(self, code: str, message: str):
        super().__init__(message)
        self.code = code
        self.message = message


def make_provider(settings: Settings, http_client: httpx.AsyncClient | None) -> Provider:
    if settings.llm_provider == "openai":
        from server.chat.openai import OpenAIProvider

        return OpenAIProvider(settings, http_client)
    from server.chat.agent import ExtractiveProvider

    return ExtractiveProvider()
