"""A real OpenAI-compatible HTTP server on loopback that serves a transformers model (for the served-teacher tests).

``/v1/models``, ``/v1/completions`` and ``/v1/chat/completions`` (with ``logprobs`` / ``top_logprobs``), a
threading ``http.server``. Knobs for the failure cases a real server shows: ``fail_next`` answers the
next requests with an HTTP status (429, 503), ``delay`` holds every answer back, ``malformed`` answers
with JSON that lacks ``choices``, ``api_key`` demands a bearer key, ``logprobs = False`` ignores ``logprobs``
and ``echo`` (as servers without log-probs do). With ``max_batch_wait`` > 0 requests
arriving within that many seconds of each other are generated as one batch (as vLLM, SGLang and
llama.cpp's parallel slots batch concurrent requests), with distill-gui's batched generation.

Run alone: ``python tests/openai_server.py MODEL_DIR PORT``.
"""

from __future__ import annotations

import json
import queue
import threading
import time
from concurrent.futures import Future
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer


class ModelServer:
    """Serves ``model``/``tokenizer`` as ``name`` on 127.0.0.1 (port 0: a free one) in a background thread."""

    def __init__(self, model, tokenizer, name: str = "tiny", port: int = 0, max_batch_wait: float = 0.0):
        import torch

        self.model, self.tokenizer, self.name = model.eval(), tokenizer, name
        self.fail_next: list[int] = []
        self.delay = 0.0
        self.malformed = False
        self.api_key: str | None = None
        self.logprobs = True  # False: answer as a server that ignores logprobs and echo (no log-probs at all)
        self.requests = 0
        self.lock = threading.Lock()
        self.model_lock = threading.Lock()
        self.torch = torch
        self.max_batch_wait = max_batch_wait
        self.queue: queue.Queue = queue.Queue()
        self.batches: list[int] = []
        server = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args):  # quiet
                pass

            def _send(self, code: int, payload, headers: dict | None = None) -> None:
                body = payload if isinstance(payload, bytes) else json.dumps(payload).encode("utf-8")
                self.send_response(code)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(body)))
                for k, v in (headers or {}).items():
                    self.send_header(k, v)
                try:
                    self.end_headers()
                    self.wfile.write(body)
                except (BrokenPipeError, ConnectionResetError):  # the client gave up (a timeout under test): nothing to tell it
                    self.close_connection = True

            def _gate(self) -> bool:
                with server.lock:
                    server.requests += 1
                    fail = server.fail_next.pop(0) if server.fail_next else None
                if server.api_key is not None and self.headers.get("Authorization") != f"Bearer {server.api_key}":
                    self._send(401, {"error": {"message": "invalid api key"}})
                    return False
                if fail is not None:
                    self._send(fail, {"error": {"message": f"try again ({fail})"}}, {"Retry-After": "0"} if fail == 429 else None)
                    return False
                if server.delay:
                    time.sleep(server.delay)
                return True

            def do_GET(self):
                if not self._gate():
                    return
                if self.path.rstrip("/") == "/v1/models":
                    self._send(200, {"object": "list", "data": [{"id": server.name, "object": "model"}]})
                else:
                    self._send(404, {"error": {"message": f"no route {self.path}"}})

            def do_POST(self):
                if not self._gate():
                    return
                body = json.loads(self.rfile.read(int(self.headers.get("Content-Length") or 0)) or b"{}")
                if body.get("model") != server.name:
                    self._send(404, {"error": {"message": f"model '{body.get('model')}' not found"}})
                    return
                if self.path == "/v1/completions":
                    prompt, chat = body["prompt"], False
                    top = int(body.get("logprobs") or 0)
                elif self.path == "/v1/chat/completions":
                    prompt, chat = server.render(body["messages"]), True
                    top = int(body.get("top_logprobs") or 0) if body.get("logprobs") else 0
                else:
                    self._send(404, {"error": {"message": f"no route {self.path}"}})
                    return
                if not server.logprobs:
                    top = 0
                if self.path == "/v1/completions" and body.get("echo") and top:
                    self._send(
                        200,
                        {
                            "id": "cmpl",
                            "object": "text_completion",
                            "model": server.name,
                            "choices": [{"index": 0, "text": prompt, "finish_reason": "length", "logprobs": server.score(prompt, top)}],
                        },
                    )
                    return
                if server.malformed:
                    self._send(200, {"id": "x", "object": "text_completion", "result": "no choices here"})
                    return
                text, tokens, n_new = server.answer(
                    prompt, int(body.get("max_tokens") or 16), float(body.get("temperature") or 0.0), body.get("seed"), top
                )
                if chat:
                    choice = {"index": 0, "message": {"role": "assistant", "content": text}, "finish_reason": "length"}
                    if top:
                        choice["logprobs"] = {
                            "content": [
                                {"token": t, "logprob": lp, "top_logprobs": [{"token": a, "logprob": b} for a, b in alts]}
                                for t, lp, alts in tokens
                            ]
                        }
                else:
                    choice = {"index": 0, "text": text, "finish_reason": "length"}
                    if top:
                        choice["logprobs"] = {
                            "tokens": [t for t, _, _ in tokens],
                            "token_logprobs": [lp for _, lp, _ in tokens],
                            "top_logprobs": [dict(alts) for _, _, alts in tokens],
                        }
                self._send(
                    200,
                    {
                        "id": "cmpl",
                        "object": "chat.completion" if chat else "text_completion",
                        "model": server.name,
                        "choices": [choice],
                        "usage": {"completion_tokens": n_new},
                    },
                )

        self.httpd = ThreadingHTTPServer(("127.0.0.1", port), Handler)
        self.httpd.daemon_threads = True
        self.port = self.httpd.server_address[1]
        self.url = f"http://127.0.0.1:{self.port}/v1"
        self.thread = threading.Thread(target=self.httpd.serve_forever, daemon=True)

    def answer(self, prompt: str, max_tokens: int, temperature: float, seed, top: int):
        """(text, top log-probs per token, new tokens): batched with concurrent requests when batching is on."""
        if not self.max_batch_wait or top:
            return self.generate(prompt, max_tokens, temperature, seed, top)
        done: Future = Future()
        self.queue.put((prompt, max_tokens, temperature, done))
        return done.result()

    def _batcher(self) -> None:
        from distill_gui.core.generation import GenerationSettings, generate

        while True:
            first = self.queue.get()
            if first is None:
                return
            batch = [first]
            deadline = time.monotonic() + self.max_batch_wait
            while len(batch) < 32:
                try:
                    item = self.queue.get(timeout=max(deadline - time.monotonic(), 0))
                except queue.Empty:
                    break
                if item is None:
                    self.queue.put(None)
                    break
                batch.append(item)
            groups: dict[tuple, list] = {}
            for item in batch:
                groups.setdefault((item[1], item[2]), []).append(item)
            for (max_tokens, temperature), items in groups.items():
                try:
                    with self.model_lock:
                        texts = generate(
                            self.model,
                            self.tokenizer,
                            [i[0] for i in items],
                            GenerationSettings(max_new_tokens=max_tokens, temperature=temperature, batch_size=len(items)),
                        )
                    self.batches.append(len(items))
                    for item, answers in zip(items, texts):
                        item[3].set_result((answers[0], [], len(self.tokenizer(answers[0], add_special_tokens=False)["input_ids"])))
                except Exception as exc:  # the requests in the batch fail with it
                    for item in items:
                        item[3].set_exception(exc)

    def score(self, prompt: str, top: int) -> dict:
        """The completions API's logprobs of the prompt's own tokens (``echo``): none for the first token."""
        torch = self.torch
        ids = self.tokenizer(prompt, add_special_tokens=False, return_tensors="pt")["input_ids"]
        with self.model_lock, torch.no_grad():
            logp = torch.log_softmax(self.model(ids).logits[0].float(), -1)
        pieces = [self.tokenizer.decode([int(i)]) for i in ids[0]]
        token_logprobs, tops = [None], [None]
        for pos in range(1, ids.shape[1]):
            values, idx = logp[pos - 1].topk(top)
            token_logprobs.append(float(logp[pos - 1, ids[0, pos]]))
            top_map: dict[str, float] = {}
            for v, i in zip(values, idx):
                top_map.setdefault(self.tokenizer.decode([int(i)]), float(v))
            tops.append(top_map)
        return {"tokens": pieces, "token_logprobs": token_logprobs, "top_logprobs": tops}

    def render(self, messages: list[dict]) -> str:
        if getattr(self.tokenizer, "chat_template", None):
            return self.tokenizer.apply_chat_template(messages, tokenize=False, add_generation_prompt=True)
        return "\n".join(m["content"] for m in messages)

    def generate(self, prompt: str, max_tokens: int, temperature: float, seed, top: int):
        torch = self.torch
        ids = self.tokenizer(prompt, add_special_tokens=False, return_tensors="pt")["input_ids"]
        with self.model_lock, torch.no_grad():
            if seed is not None:
                torch.manual_seed(int(seed))
            out = self.model.generate(
                ids,
                max_new_tokens=max_tokens,
                do_sample=temperature > 0,
                temperature=temperature or None,
                top_p=None,
                top_k=None,
                output_scores=True,
                return_dict_in_generate=True,
                pad_token_id=self.tokenizer.pad_token_id,
            )
        new = out.sequences[0, ids.shape[1] :].tolist()
        tokens = []
        if top:
            for step, tok in zip(out.scores, new):
                logp = torch.log_softmax(step[0].float(), -1)
                values, idx = logp.topk(top)
                # as llama.cpp's server does: each token as the text it decodes to
                alts = [(self.tokenizer.decode([int(i)]), float(v)) for v, i in zip(values, idx)]
                tokens.append((self.tokenizer.decode([int(tok)]), float(logp[tok]), alts))
        return self.tokenizer.decode(new, skip_special_tokens=True), tokens, len(new)

    def __enter__(self) -> "ModelServer":
        self.thread.start()
        if self.max_batch_wait:
            self.batch_thread = threading.Thread(target=self._batcher, daemon=True)
            self.batch_thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self.httpd.shutdown()
        self.httpd.server_close()
        if self.max_batch_wait:
            self.queue.put(None)


if __name__ == "__main__":
    import sys

    from transformers import AutoModelForCausalLM, AutoTokenizer

    folder, port = sys.argv[1], int(sys.argv[2])
    with ModelServer(AutoModelForCausalLM.from_pretrained(folder), AutoTokenizer.from_pretrained(folder), port=port) as srv:
        print(f"serving {folder} at {srv.url}", flush=True)
        srv.thread.join()
