"""A teacher served over an OpenAI-compatible HTTP API (Ollama, LM Studio, llama.cpp's server, vLLM, SGLang).

The teacher then only writes text (``teacher.url``, ``teacher.model``, ``teacher.api_key_env``): many
requests in flight at once (``concurrency``), a rate limit (requests per second), retries with
exponential backoff on 429 and 5xx answers (honouring ``Retry-After``), a timeout per request. Every
failure becomes one :class:`ServedTeacherError` line naming the URL and what to do: nothing answers,
a TLS error, an API key missing from the environment or refused, a model the server does not have, a
timeout, a malformed answer.

Only the standard library is used (``urllib``), so a served teacher needs nothing installed.
"""

from __future__ import annotations

import json
import os
import random
import socket
import ssl
import threading
import time
import urllib.error
import urllib.request
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Any, Callable, Sequence

from distill_gui.core.errors import UserError

API_CHOICES = ("chat", "completions")
RETRY_STATUSES = (429, 500, 502, 503, 504)


class ServedTeacherError(UserError):
    """The served teacher cannot be used; the one-line message says why and what to do."""


@dataclass(frozen=True)
class Completion:
    """One completion: its text, why it stopped, and the top log-probs per generated token when asked for
    (``[(token, logprob, [(alternative, logprob), ...]), ...]``)."""

    text: str
    finish_reason: str = ""
    tokens: tuple = ()
    completion_tokens: int = 0


@dataclass(frozen=True)
class ServerCheck:
    """What the Models page's Test button shows: the server's models, one short completion, its latency."""

    url: str
    models: tuple[str, ...]
    model: str
    sample: str
    latency_s: float

    def summary(self) -> str:
        return (
            f"{self.url}: {len(self.models)} model(s) ({', '.join(self.models[:5])}{', ...' if len(self.models) > 5 else ''}); "
            f"{self.model} answered {self.sample!r} in {self.latency_s * 1000:.0f} ms"
        )


def base_url(url: str) -> str:
    """``url`` with ``/v1`` (the OpenAI API's root) and no trailing slash: ``http://host:8080`` -> ``http://host:8080/v1``."""
    url = url.strip().rstrip("/")
    if not url.startswith(("http://", "https://")):
        raise ServedTeacherError(f"teacher.url: {url!r} is not an http:// or https:// URL (e.g. http://localhost:11434/v1)")
    for suffix in ("/chat/completions", "/completions", "/models"):
        if url.endswith(suffix):
            url = url[: -len(suffix)]
    return url if url.endswith("/v1") else url + "/v1"


def api_key_from_env(api_key_env: str, setting: str = "teacher.api_key_env") -> str | None:
    """The API key in environment variable ``api_key_env`` (None when none is asked for); ``setting`` names
    where the user gave the variable, for the message when it is unset."""
    if not api_key_env:
        return None
    key = os.environ.get(api_key_env, "")
    if not key.strip():
        raise ServedTeacherError(
            f"{setting}: the environment variable {api_key_env} is not set (or empty); export it with the "
            f"server's API key, or leave {setting} empty for a server without keys"
        )
    return key.strip()


class _RateLimit:
    """At most ``per_second`` request starts per second across threads (0: no limit)."""

    def __init__(self, per_second: float):
        self.interval = 1.0 / per_second if per_second > 0 else 0.0
        self.lock = threading.Lock()
        self.next_start = 0.0

    def wait(self) -> None:
        if not self.interval:
            return
        with self.lock:
            now = time.monotonic()
            start = max(now, self.next_start)
            self.next_start = start + self.interval
        if start > now:
            time.sleep(start - now)


@dataclass
class ServedTeacher:
    """A client for one model on an OpenAI-compatible server."""

    url: str
    model: str = ""
    """The server's model name; empty: the server's only (or first) model."""
    api_key_env: str = ""
    api: str = "chat"
    """chat: /v1/chat/completions with the prompt as one user message (the server applies its chat template);
    completions: /v1/completions with the prompt as it is."""
    concurrency: int = 4
    rate_limit: float = 0.0
    """Requests per second at most (0: no limit)."""
    timeout: float = 120.0
    max_retries: int = 4
    backoff: float = 0.5
    """First retry waits this long (seconds), doubling each time, with jitter."""
    key_setting: str = "teacher.api_key_env"
    """Where the user names ``api_key_env`` (a config key or a command-line option), for messages."""
    completion_tokens: int = field(default=0, init=False)
    _lock: threading.Lock = field(default_factory=threading.Lock, init=False, repr=False)

    def __post_init__(self) -> None:
        self.root = base_url(self.url)
        if self.api not in API_CHOICES:
            raise ServedTeacherError(f"teacher api: {self.api!r} is not one of {', '.join(API_CHOICES)}")
        if self.concurrency < 1 or self.max_retries < 0 or self.timeout <= 0 or self.rate_limit < 0:
            raise ServedTeacherError("concurrency must be >= 1, max_retries >= 0, timeout > 0 and rate_limit >= 0")
        self.key = api_key_from_env(self.api_key_env, self.key_setting)
        self._limit = _RateLimit(self.rate_limit)

    # ---- HTTP
    def _request(self, path: str, body: dict | None = None) -> dict:
        """One JSON request with retries; the decoded JSON object of the answer."""
        url = self.root + path
        data = None if body is None else json.dumps(body).encode("utf-8")
        headers = {"Content-Type": "application/json", "Accept": "application/json"}
        if self.key:
            headers["Authorization"] = f"Bearer {self.key}"
        attempt = 0
        while True:
            self._limit.wait()
            request = urllib.request.Request(url, data=data, headers=headers, method="GET" if body is None else "POST")
            try:
                with urllib.request.urlopen(request, timeout=self.timeout) as answer:
                    raw = answer.read()
                break
            except urllib.error.HTTPError as exc:
                detail = _error_detail(exc)
                if exc.code in RETRY_STATUSES and attempt < self.max_retries:
                    attempt += 1
                    time.sleep(_retry_after(exc) or self._delay(attempt))
                    continue
                raise self._http_error(exc.code, detail, url) from None
            except (TimeoutError, socket.timeout) as exc:
                if attempt < self.max_retries:
                    attempt += 1
                    time.sleep(self._delay(attempt))
                    continue
                raise ServedTeacherError(
                    f"teacher.url: {url} gave no answer within {self.timeout:g} s ({attempt + 1} tries); a slow model may need a "
                    "longer timeout or fewer requests at once"
                ) from exc
            except urllib.error.URLError as exc:
                raise self._connection_error(exc.reason, url) from None
            except (ConnectionError, OSError) as exc:
                if isinstance(exc, (ConnectionResetError, ConnectionAbortedError)) and attempt < self.max_retries:
                    attempt += 1
                    time.sleep(self._delay(attempt))
                    continue
                raise self._connection_error(exc, url) from None
        try:
            decoded = json.loads(raw.decode("utf-8"))
        except (UnicodeDecodeError, json.JSONDecodeError):
            raise ServedTeacherError(
                f"teacher.url: {url} answered with something that is not JSON ({raw[:80]!r}); is this an OpenAI-compatible API?"
            ) from None
        if not isinstance(decoded, dict):
            raise ServedTeacherError(f"teacher.url: {url} answered with JSON that is not an object; is this an OpenAI-compatible API?")
        return decoded

    def _delay(self, attempt: int) -> float:
        return self.backoff * (2 ** (attempt - 1)) * (0.5 + random.random())

    def _http_error(self, code: int, detail: str, url: str) -> ServedTeacherError:
        if code in (401, 403):
            how = (
                f"the key in {self.api_key_env} was refused"
                if self.api_key_env
                else f"set {self.key_setting} to the variable holding the key"
            )
            return ServedTeacherError(f"teacher.url: {url} refused the request (HTTP {code}: {detail}); {how}")
        if code == 404 and self.model and "model" in detail.lower():
            return ServedTeacherError(
                f"teacher.model: the server at {self.root} has no model {self.model!r} (HTTP 404: {detail}); {self._model_hint()}"
            )
        if code == 404:
            return ServedTeacherError(
                f"teacher.url: {url} does not exist (HTTP 404); is {self.root} the server's OpenAI-compatible /v1 root?"
            )
        if code in RETRY_STATUSES:
            return ServedTeacherError(f"teacher.url: {url} kept failing (HTTP {code}: {detail}) after {self.max_retries} retries")
        return ServedTeacherError(f"teacher.url: {url} answered HTTP {code}: {detail}")

    def _connection_error(self, reason: Any, url: str) -> ServedTeacherError:
        if isinstance(reason, ssl.SSLCertVerificationError):
            return ServedTeacherError(
                f"teacher.url: {url}: the server's TLS certificate is not trusted ({reason.verify_message}); use its http:// "
                "address on a trusted network, or install its certificate authority"
            )
        if isinstance(reason, ssl.SSLError):
            return ServedTeacherError(
                f"teacher.url: {url}: TLS failed ({reason.reason or reason}); is the server speaking https on this port?"
            )
        if isinstance(reason, (TimeoutError, socket.timeout)):
            return ServedTeacherError(f"teacher.url: {url} did not accept a connection within {self.timeout:g} s")
        if isinstance(reason, socket.gaierror):
            return ServedTeacherError(f"teacher.url: the host in {url} is not known ({reason.strerror}); check the address")
        if isinstance(reason, ConnectionRefusedError):
            return ServedTeacherError(
                f"teacher.url: nothing answers at {self.root} (connection refused); is the server running on that port?"
            )
        return ServedTeacherError(f"teacher.url: cannot reach {url} ({reason})")

    def _model_hint(self) -> str:
        try:
            names = self.list_models()
        except ServedTeacherError:
            return "list the server's models to pick one"
        return f"it serves: {', '.join(names) or '(none)'}"

    # ---- API
    def list_models(self) -> list[str]:
        """The model names the server lists at ``/v1/models``."""
        answer = self._request("/models")
        data = answer.get("data")
        if not isinstance(data, list) or not all(isinstance(m, dict) and isinstance(m.get("id"), str) for m in data):
            raise ServedTeacherError(f"teacher.url: {self.root}/models answered without a list of models (data[].id)")
        return [m["id"] for m in data]

    def resolve_model(self) -> str:
        """The model to ask: ``model`` when the server lists it, its only model when ``model`` is empty."""
        names = self.list_models()
        if not self.model:
            if not names:
                raise ServedTeacherError(f"teacher.model: the server at {self.root} lists no model; load one, or name it in teacher.model")
            self.model = names[0]
        elif names and self.model not in names:
            raise ServedTeacherError(f"teacher.model: the server at {self.root} has no model {self.model!r}; it serves: {', '.join(names)}")
        return self.model

    def complete(
        self,
        prompt: str,
        max_tokens: int = 256,
        temperature: float = 0.0,
        top_p: float = 1.0,
        seed: int | None = None,
        top_logprobs: int = 0,
        stop: Sequence[str] = (),
    ) -> Completion:
        """One completion of ``prompt``."""
        body: dict[str, Any] = {
            "model": self.model,
            "max_tokens": int(max_tokens),
            "temperature": float(temperature),
            "top_p": float(top_p),
        }
        if seed is not None:
            body["seed"] = int(seed)
        if stop:
            body["stop"] = list(stop)
        if self.api == "chat":
            body["messages"] = [{"role": "user", "content": prompt}]
            if top_logprobs:
                body["logprobs"] = True
                body["top_logprobs"] = int(top_logprobs)
            answer = self._request("/chat/completions", body)
        else:
            body["prompt"] = prompt
            if top_logprobs:
                body["logprobs"] = int(top_logprobs)
            answer = self._request("/completions", body)
        completion = _parse_completion(answer, self.api, f"{self.root}/{'chat/completions' if self.api == 'chat' else 'completions'}")
        with self._lock:
            self.completion_tokens += completion.completion_tokens
        return completion

    def score(self, text: str, top_logprobs: int) -> tuple:
        """The server's top log-probs on every token of ``text`` itself (``/v1/completions`` with ``echo``, no new
        tokens): ``((token, logprob, ((alternative, logprob), ...)), ...)``; the first token has no context (logprob 0)."""
        body = {"model": self.model, "prompt": text, "max_tokens": 0, "echo": True, "logprobs": int(top_logprobs), "temperature": 0.0}
        answer = self._request("/completions", body)
        url = f"{self.root}/completions"
        choices = answer.get("choices")
        logprobs = choices[0].get("logprobs") if isinstance(choices, list) and choices and isinstance(choices[0], dict) else None
        if (
            not isinstance(logprobs, dict)
            or not isinstance(logprobs.get("tokens"), list)
            or not isinstance(logprobs.get("top_logprobs"), list)
        ):
            raise ServedTeacherError(
                f"teacher.url: {url} gave no log-probs of the prompt's tokens (echo with logprobs); this server cannot score given "
                "text, so it cannot fill a teacher cache; it can still write text (generate-data)"
            )
        tokens = _logprob_tokens(logprobs, "completions")
        # Some servers (llama-cpp-python) write a token even with max_tokens 0: keep the text's own tokens.
        offsets = logprobs.get("text_offset")
        if isinstance(offsets, list) and len(offsets) == len(tokens) and all(isinstance(o, int) for o in offsets):
            return tuple(t for t, o in zip(tokens, offsets) if o < len(text))
        kept, covered = [], 0
        for t in tokens:
            if covered >= len(text):
                break
            kept.append(t)
            covered += len(t[0])
        return tuple(kept)

    def complete_many(
        self,
        prompts: Sequence[str],
        samples: int = 1,
        seed: int | None = None,
        progress: Callable[[int], None] | None = None,
        **options: Any,
    ) -> list[list[Completion]]:
        """``samples`` completions of every prompt, ``concurrency`` requests in flight; results in prompt order.

        Sample ``j`` of prompt ``i`` is asked with seed ``seed + i * samples + j`` (reproducible where the
        server honours seeds). The first error stops the rest and is raised.
        """
        jobs = [(i, j) for i in range(len(prompts)) for j in range(samples)]
        out: list[list[Completion | None]] = [[None] * samples for _ in prompts]

        def run(job: tuple[int, int]) -> None:
            i, j = job
            job_seed = None if seed is None else seed + i * samples + j
            out[i][j] = self.complete(prompts[i], seed=job_seed, **options)

        if self.concurrency == 1:
            for k, job in enumerate(jobs):
                run(job)
                if progress is not None:
                    progress(k + 1)
        else:
            with ThreadPoolExecutor(max_workers=self.concurrency) as pool:
                futures = [pool.submit(run, job) for job in jobs]
                try:
                    for k, future in enumerate(futures):
                        future.result()
                        if progress is not None:
                            progress(k + 1)
                except BaseException:
                    for future in futures:
                        future.cancel()
                    raise
        return [[c for c in row if c is not None] for row in out]

    def check(self, prompt: str = "Say hello.", max_tokens: int = 8) -> ServerCheck:
        """The Test button: list the models, ask one short completion, time it."""
        names = self.list_models()
        self.resolve_model()
        started = time.perf_counter()
        sample = self.complete(prompt, max_tokens=max_tokens)
        return ServerCheck(self.root, tuple(names), self.model, sample.text, time.perf_counter() - started)


def _error_detail(exc: urllib.error.HTTPError) -> str:
    try:
        raw = exc.read()[:2000].decode("utf-8", "replace")
    except OSError:
        return exc.reason or ""
    try:
        body = json.loads(raw)
        err = body.get("error", body) if isinstance(body, dict) else body
        message = err.get("message") if isinstance(err, dict) else err
        return str(message or raw).strip()[:300]
    except json.JSONDecodeError:
        return raw.strip()[:300] or str(exc.reason)


def _retry_after(exc: urllib.error.HTTPError) -> float | None:
    value = exc.headers.get("Retry-After") if exc.headers else None
    try:
        return min(float(value), 60.0) if value is not None else None
    except ValueError:
        return None


def _parse_completion(answer: dict, api: str, url: str) -> Completion:
    """A :class:`Completion` from a completions or chat-completions answer; malformed ones are refused by name."""
    choices = answer.get("choices")
    if not isinstance(choices, list) or not choices or not isinstance(choices[0], dict):
        raise ServedTeacherError(f"teacher.url: {url} answered without choices[0] (malformed response: {json.dumps(answer)[:200]})")
    choice = choices[0]
    if api == "chat":
        message = choice.get("message")
        text = message.get("content") if isinstance(message, dict) else None
    else:
        text = choice.get("text")
    if not isinstance(text, str):
        field_name = "choices[0].message.content" if api == "chat" else "choices[0].text"
        raise ServedTeacherError(f"teacher.url: {url} answered without {field_name} (malformed response: {json.dumps(choice)[:200]})")
    usage: dict = answer["usage"] if isinstance(answer.get("usage"), dict) else {}
    return Completion(
        text, str(choice.get("finish_reason") or ""), _logprob_tokens(choice.get("logprobs"), api), int(usage.get("completion_tokens") or 0)
    )


def _logprob_tokens(logprobs: Any, api: str) -> tuple:
    """``((token, logprob, ((alternative, logprob), ...)), ...)`` from either API's logprobs field (empty when absent)."""
    if not isinstance(logprobs, dict):
        return ()
    if api == "chat":
        content = logprobs.get("content")
        if not isinstance(content, list):
            return ()
        return tuple(
            (
                str(t.get("token", "")),
                float(t.get("logprob", 0.0)),
                tuple((str(a.get("token", "")), float(a.get("logprob", 0.0))) for a in t.get("top_logprobs") or ()),
            )
            for t in content
            if isinstance(t, dict)
        )
    tokens, values, tops = logprobs.get("tokens") or [], logprobs.get("token_logprobs") or [], logprobs.get("top_logprobs") or []
    return tuple(
        (str(tok), float(val) if val is not None else 0.0, tuple((str(k), float(v)) for k, v in (top or {}).items()))
        for tok, val, top in zip(tokens, values, list(tops) + [None] * (len(tokens) - len(tops)))
    )
