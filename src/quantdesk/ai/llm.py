"""The assistant's model: DeepSeek, or any OpenAI-compatible endpoint, via the `openai` SDK.

`ChatModel` is what the assistant needs from a model: one answer (`complete`) or the same answer
as it is written (`stream`). `OpenAIChatModel` speaks the chat-completions protocol to
`DEEPSEEK_API_URL`; the offline analyst (offline.py) is the other implementation. Provider
failures become the API's errors: a timeout or an unreachable provider is a 503, the provider's
rate limit a 429 with its Retry-After, a refused key a 502, any other failure a 502. The SDK
retries (AI_MAX_RETRIES) only what is safe to repeat: a request whose answer has not started
(timeouts, lost connections, 408/409/429/5xx); a stream that breaks off is never re-sent.
"""

from __future__ import annotations

import logging
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Protocol

from quantdesk.errors import APIError, BadGateway, ServiceUnavailable, TooManyRequests
from quantdesk.settings import Settings

if TYPE_CHECKING:
    import openai

log = logging.getLogger(__name__)

DEFAULT_RETRY_AFTER = 30  # seconds, when a provider's 429 names no Retry-After


@dataclass(frozen=True)
class ToolCall:
    """A function the model asks to run; `arguments` is the JSON text the model wrote."""

    id: str
    name: str
    arguments: str

    def as_dict(self) -> dict[str, str]:
        return {"id": self.id, "name": self.name, "arguments": self.arguments}


@dataclass
class Completion:
    """One finished answer of a model."""

    content: str
    tool_calls: list[ToolCall] = field(default_factory=list)
    finish_reason: str | None = None
    tokens_in: int | None = None
    tokens_out: int | None = None


class ChatModel(Protocol):
    """A chat model: the OpenAI-compatible client or the offline analyst."""

    name: str
    offline: bool

    def complete(
        self,
        messages: list[dict[str, Any]],
        *,
        tools: list[dict[str, Any]] | None = None,
        json_output: bool = False,
    ) -> Completion: ...

    def stream(
        self, messages: list[dict[str, Any]], *, tools: list[dict[str, Any]] | None = None
    ) -> Iterator[str | Completion]:
        """Text pieces as they arrive, then the finished `Completion` as the last item."""
        ...

    def close(self) -> None: ...


# ---------------------------------------------------------------- errors


class ProviderTimeout(ServiceUnavailable):
    code = "ai_provider_timeout"


class ProviderUnavailable(ServiceUnavailable):
    code = "ai_provider_unavailable"


class ProviderRateLimited(TooManyRequests):
    code = "ai_provider_rate_limited"


class ProviderAuthFailed(BadGateway):
    code = "ai_provider_auth_failed"


class ProviderError(BadGateway):
    code = "ai_provider_error"


class ProviderFailure(Exception):
    """A failed model call: the error for the client, and a redacted text for ai_responses."""

    def __init__(self, error: APIError, internal: str) -> None:
        super().__init__(internal)
        self.error = error
        self.internal = internal


def redact(text: str, secret: str) -> str:
    """`text` without the API key (providers may echo a key they refuse)."""
    if secret:
        text = text.replace(secret, "[redacted]")
        if len(secret) > 8:  # masked echoes such as "sk-ab****wxyz"
            text = text.replace(secret[:6], "[redacted]").replace(secret[-4:], "[redacted]")
    return text


def _retry_after(exc: openai.APIStatusError) -> int:
    raw = exc.response.headers.get("retry-after", "")
    try:
        return max(1, int(float(raw)))
    except ValueError:
        return DEFAULT_RETRY_AFTER


def provider_failure(exc: Exception, *, secret: str, timeout: float) -> ProviderFailure:
    """Map an SDK exception onto the API's errors (never with the provider's raw text)."""
    import openai

    detail = getattr(exc, "message", None) or str(exc)
    internal = redact(f"{type(exc).__name__}: {detail}", secret)[:2000]
    error: APIError
    if isinstance(exc, openai.APITimeoutError):
        error = ProviderTimeout(
            f"The AI provider did not answer within {timeout:g} s. Try again shortly.",
            details={"timeout_seconds": timeout},
        )
    elif isinstance(exc, openai.APIConnectionError):
        error = ProviderUnavailable(
            "The AI provider cannot be reached right now. Try again shortly."
        )
    elif isinstance(exc, openai.RateLimitError):
        seconds = _retry_after(exc)
        error = ProviderRateLimited(
            f"The AI provider is rate limiting this server. Retry in {seconds} s.",
            retry_after=seconds,
        )
    elif isinstance(exc, openai.AuthenticationError | openai.PermissionDeniedError):
        error = ProviderAuthFailed(
            "The AI provider refused the configured API key (DEEPSEEK_API_KEY); an "
            "administrator must fix it.",
            details={"provider_status": exc.status_code},
        )
    elif isinstance(exc, openai.APIStatusError):
        error = ProviderError(
            f"The AI provider failed with status {exc.status_code}. Try again later.",
            details={"provider_status": exc.status_code},
        )
    else:
        error = ProviderError("The AI provider sent an answer that could not be read.")
    return ProviderFailure(error, internal)


def broken_stream() -> ProviderFailure:
    error = ProviderError("The AI provider's answer broke off before it ended. Try again.")
    return ProviderFailure(error, "stream ended without a finish reason")


# ---------------------------------------------------------------- the OpenAI-compatible model


def api_key(settings: Settings) -> str:
    return settings.DEEPSEEK_API_KEY.get_secret_value().strip()


class OpenAIChatModel:
    """DEEPSEEK_API_URL's chat completions with AI_MODEL, through the `openai` SDK."""

    offline = False

    def __init__(self, settings: Settings) -> None:
        import openai  # lazily: about 0.6 s of imports only a configured server pays

        self.name = settings.AI_MODEL
        self._secret = api_key(settings)
        self._timeout = settings.AI_TIMEOUT_SECONDS
        self._max_tokens = settings.AI_MAX_OUTPUT_TOKENS
        self._client = openai.OpenAI(
            api_key=self._secret,
            base_url=settings.DEEPSEEK_API_URL,
            timeout=settings.AI_TIMEOUT_SECONDS,
            max_retries=settings.AI_MAX_RETRIES,
        )
        # The SDK fills these from OPENAI_ORG_ID / OPENAI_PROJECT_ID; they are OpenAI's own
        # headers and mean nothing to DeepSeek or a local server: send none.
        self._client.organization = None
        self._client.project = None

    def _arguments(self, tools: list[dict[str, Any]] | None) -> dict[str, Any]:
        arguments: dict[str, Any] = {"model": self.name, "max_tokens": self._max_tokens}
        if tools:
            arguments["tools"] = tools
        return arguments

    def _failure(self, exc: Exception) -> ProviderFailure:
        failure = provider_failure(exc, secret=self._secret, timeout=self._timeout)
        log.warning("AI provider call failed: %s", failure.internal)
        return failure

    def complete(
        self,
        messages: list[dict[str, Any]],
        *,
        tools: list[dict[str, Any]] | None = None,
        json_output: bool = False,
    ) -> Completion:
        import openai

        arguments = self._arguments(tools)
        if json_output:
            arguments["response_format"] = {"type": "json_object"}
        try:
            answer = self._client.chat.completions.create(
                messages=messages,  # type: ignore[arg-type]
                **arguments,
            )
        except openai.OpenAIError as exc:
            raise self._failure(exc) from None
        if not answer.choices:
            raise self._failure(ValueError("an answer without choices"))
        choice = answer.choices[0]
        calls = [
            ToolCall(call.id, call.function.name, call.function.arguments or "{}")
            for call in choice.message.tool_calls or []
            if call.type == "function"
        ]
        usage = answer.usage
        return Completion(
            content=choice.message.content or "",
            tool_calls=calls,
            finish_reason=choice.finish_reason,
            tokens_in=usage.prompt_tokens if usage else None,
            tokens_out=usage.completion_tokens if usage else None,
        )

    def stream(
        self, messages: list[dict[str, Any]], *, tools: list[dict[str, Any]] | None = None
    ) -> Iterator[str | Completion]:
        import openai

        try:
            chunks = self._client.chat.completions.create(  # type: ignore[call-overload]
                messages=messages,
                stream=True,
                stream_options={"include_usage": True},
                **self._arguments(tools),
            )
        except openai.OpenAIError as exc:
            raise self._failure(exc) from None
        text: list[str] = []
        calls: dict[int, dict[str, str]] = {}
        finish: str | None = None
        tokens_in = tokens_out = None
        try:
            for chunk in chunks:
                if chunk.usage is not None:
                    tokens_in, tokens_out = chunk.usage.prompt_tokens, chunk.usage.completion_tokens
                for choice in chunk.choices:
                    delta = choice.delta
                    if delta.content:
                        text.append(delta.content)
                        yield delta.content
                    for part in delta.tool_calls or []:
                        call = calls.setdefault(part.index, {"id": "", "name": "", "arguments": ""})
                        call["id"] = part.id or call["id"]
                        if part.function is not None:
                            call["name"] += part.function.name or ""
                            call["arguments"] += part.function.arguments or ""
                    finish = choice.finish_reason or finish
        except openai.OpenAIError as exc:
            raise self._failure(exc) from None
        finally:
            chunks.close()
        if finish is None:
            failure = broken_stream()
            log.warning("AI provider call failed: %s", failure.internal)
            raise failure
        yield Completion(
            content="".join(text),
            tool_calls=[
                ToolCall(c["id"] or f"call_{i}", c["name"], c["arguments"] or "{}")
                for i, c in sorted(calls.items())
            ],
            finish_reason=finish,
            tokens_in=tokens_in,
            tokens_out=tokens_out,
        )

    def close(self) -> None:
        self._client.close()
