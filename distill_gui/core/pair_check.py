"""The pair check — what the teacher and the student are, whether their tokenizers allow token-level KD,
and the memory the run needs — run in a child process of the app (``python -m distill_gui.core.pair_check``).

Reading models imports torch and transformers, parses GGUF files and may run a model's own code
(``trust_remote_code``): none of it may hold the app's interpreter lock or run inside the app. The child
reads one JSON request a line on stdin (``{"id": N, "config": {...}}``) and answers with JSON lines on
stdout (``{"id": N, "kind": "described" | "licence" | "failed" | "compatibility" | "memory" | "done", ...}``). A newer
request makes an older one stale: the child drops it between phases. It keeps what it has read (models,
tokenizers) for the next request, and ends when stdin closes.
"""

from __future__ import annotations

import dataclasses
import json
import sys
import threading
from typing import Any, Callable

from distill_gui.core.config import ModelConfig, RunConfig, config_from_dict

Emit = Callable[[dict], None]


def _model_key(cfg: ModelConfig) -> tuple:
    return (cfg.path, cfg.gguf_file, cfg.tokenizer, cfg.revision, cfg.trust_remote_code, cfg.allow_pickle)


class PairChecker:
    """Answers pair-check requests, keeping models' facts and tokenizers between requests."""

    def __init__(self) -> None:
        self._infos: dict[tuple, Any] = {}
        self._tokenizers: dict[tuple, Any] = {}

    def check(self, request_id: int, config: RunConfig, emit: Emit, stale: Callable[[], bool]) -> None:
        """Describe both models, compare their tokenizers, estimate memory; ``emit`` each answer as it comes."""
        from distill_gui.core.errors import describe

        infos: dict[str, Any] = {}
        roles = [("teacher", config.teacher)] if config.teacher.path else []
        roles.append(("student", config.student))
        for role, model_cfg in roles:
            if not model_cfg.path:
                continue
            if stale():
                return
            try:
                infos[role] = self._describe(model_cfg, role)
                emit({"id": request_id, "kind": "described", "role": role, "data": encode(infos[role])})
                emit({"id": request_id, "kind": "licence", "role": role, "data": encode(self._licence(model_cfg.path))})
            except Exception as exc:  # noqa: BLE001 - any failure is shown to the user as text
                emit({"id": request_id, "kind": "failed", "role": role, "message": describe(exc)})
        if stale():
            return
        if "teacher" in infos and "student" in infos:
            try:
                from distill_gui.core.vocab import check_compatibility

                compat = check_compatibility(
                    self._tokenizer(config.teacher, "teacher"),
                    self._tokenizer(config.student, "student"),
                    infos["teacher"].vocab_size,
                    infos["student"].vocab_size,
                )
                emit({"id": request_id, "kind": "compatibility", "data": encode(compat)})
            except Exception as exc:  # noqa: BLE001
                emit({"id": request_id, "kind": "failed", "role": "pair", "message": describe(exc)})
        # Without the teacher's facts an estimate would leave its weights out: none is better than a wrong "fits".
        if "student" in infos and (not config.teacher.path or "teacher" in infos):
            try:
                from distill_gui.core.memory import estimate_for_config

                estimate = estimate_for_config(config, infos.get("teacher"), infos["student"])
                emit({"id": request_id, "kind": "memory", "data": encode(estimate)})
            except Exception as exc:  # noqa: BLE001
                emit({"id": request_id, "kind": "failed", "role": "memory", "message": describe(exc)})
        emit({"id": request_id, "kind": "done"})

    def _describe(self, cfg: ModelConfig, role: str) -> Any:
        key = _model_key(cfg)
        if key not in self._infos:
            from distill_gui.core.model_info import describe_model

            self._infos[key] = describe_model(cfg, role)
        if not cfg.gguf_file:  # header reads only, each check: a file copied again is seen at once
            from distill_gui.core.safetensors_check import check_safetensors_folder

            check_safetensors_folder(cfg.path)  # a cut-short weights file would fail the run only once it loads
        return self._infos[key]

    def _licence(self, path: str) -> Any:
        from distill_gui.core.licences import detect_licence

        return detect_licence(path)

    def _tokenizer(self, cfg: ModelConfig, role: str) -> Any:
        key = _model_key(cfg)
        if key not in self._tokenizers:
            from distill_gui.core.models import load_tokenizer

            self._tokenizers[key] = load_tokenizer(cfg, role)
        return self._tokenizers[key]


# ---- The answers as JSON (plain dataclasses both ways)
def encode(obj: Any) -> dict:
    return dataclasses.asdict(obj)


def decode(kind: str, data: dict) -> Any:
    """The object an answer of ``kind`` carries: ModelInfo, TokenizerCompatibility or MemoryEstimate."""
    if kind == "described":
        from distill_gui.core.model_info import ModelInfo
        from distill_gui.core.models import ModelSource

        return ModelInfo(**{**data, "source": ModelSource(**data["source"])})
    if kind == "compatibility":
        from distill_gui.core.vocab import TokenizerCompatibility

        tuples = {k: tuple(v) for k, v in data.items() if isinstance(v, list)}
        return TokenizerCompatibility(**{**data, **tuples})
    if kind == "memory":
        from distill_gui.core.memory import MemoryEstimate

        return MemoryEstimate(**data)
    if kind == "licence":
        from distill_gui.core.licences import DetectedLicence

        return DetectedLicence(**data)
    raise ValueError(f"no object in a {kind!r} answer")


# ---- The child process
class LatestRequests:
    """The newest request read from stdin (older ones unread are dropped), and whether stdin ended.
    A request is a JSON object with an ``id``; :meth:`next` gives (id, the whole request)."""

    def __init__(self) -> None:
        self._cond = threading.Condition()
        self.latest: tuple[int, dict] | None = None
        self.newest_id = -1
        self.ended = False

    def read(self, stream) -> None:
        for line in stream:
            try:
                request = json.loads(line)
                request_id = int(request["id"])
            except (ValueError, KeyError, TypeError):
                continue
            with self._cond:
                self.latest = (request_id, request)
                self.newest_id = request_id
                self._cond.notify()
        with self._cond:
            self.ended = True
            self._cond.notify()

    def next(self) -> tuple[int, dict] | None:
        with self._cond:
            while self.latest is None and not self.ended:
                self._cond.wait()
            request, self.latest = self.latest, None
            return request


def _log_to_app_log() -> None:
    """A bug's traceback goes to the app's log file, as in the app (the answer carries one line)."""
    import logging

    from distill_gui.core.errors import app_log_path

    try:
        app_log_path().parent.mkdir(parents=True, exist_ok=True)
        handler: logging.Handler = logging.FileHandler(app_log_path(), encoding="utf-8")
    except OSError:
        handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s pair-check: %(message)s"))
    logging.getLogger("distill_gui").addHandler(handler)


def serve(stdin=None, stdout=None) -> int:
    """Answer requests until stdin ends (the app closed it or ended)."""
    _log_to_app_log()
    stdin = stdin or sys.stdin
    stdout = stdout or sys.stdout
    lock = threading.Lock()

    def emit(answer: dict) -> None:
        with lock:
            stdout.write(json.dumps(answer) + "\n")
            stdout.flush()

    requests = LatestRequests()
    threading.Thread(target=requests.read, args=(stdin,), daemon=True, name="pair-check-requests").start()
    checker = PairChecker()
    while True:
        request = requests.next()
        if request is None:
            return 0
        request_id, body = request
        try:
            config = config_from_dict(body.get("config") or {})
        except Exception as exc:  # noqa: BLE001 - a config the app sent that does not load is said, not fatal
            from distill_gui.core.errors import describe

            emit({"id": request_id, "kind": "failed", "role": "pair", "message": describe(exc)})
            emit({"id": request_id, "kind": "done"})
            continue

        def stale(rid: int = request_id) -> bool:
            return requests.newest_id != rid

        checker.check(request_id, config, emit, stale)


if __name__ == "__main__":
    raise SystemExit(serve())
