"""``distill-gui export``: a run's student (or a model folder) as a Hugging Face folder, a GGUF file or an Ollama import.

    distill-gui export RUN_OR_MODEL --to hf|gguf|ollama [--quant f16|q8_0|q4_k_m] [--out DIR] [--force] [--events json]

Prints the export folder on stdout (with ``--events json``: one JSON line per progress step and a last
``ExportFinished`` line, for the app). Exit codes: 0 exported (and, for GGUF, verified), 1 exported but
the GGUF file did not answer as the merged model did (the folder is kept, the check's file says where),
2 bad input.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path


def add_parser(subparsers) -> argparse.ArgumentParser:
    """Register the ``export`` subcommand."""
    from distill_gui.core.export import KINDS
    from distill_gui.core.export_gguf import QUANTS

    p = subparsers.add_parser(
        "export",
        help="export a run's student as a Hugging Face folder, a GGUF file or an Ollama import, with a model card",
        description=(
            "hf: merged safetensors, tokenizer and chat template. gguf: llama.cpp's converter, then the file is loaded "
            "back and checked against the merged model on the run's probe prompts. ollama: the GGUF plus a Modelfile. "
            "A LoRA run is merged into its base; an unfinished run exports its latest complete checkpoint."
        ),
    )
    p.add_argument("source", metavar="RUN_OR_MODEL", help="a run folder (its final or latest checkpoint) or a model folder")
    p.add_argument("--to", required=True, choices=KINDS, dest="kind", help="what to write")
    p.add_argument("--quant", choices=QUANTS, default=None, help="GGUF weight type (default f16; q4_k_m needs llama-quantize)")
    p.add_argument("--out", type=Path, default=None, help="the export folder (default: RUN/exports/<to>-<quant>)")
    p.add_argument("--force", action="store_true", help="replace the export folder when it exists")
    p.add_argument("--events", choices=["text", "json"], default="text", help="json: one JSON line per step on stdout (for the app)")
    p.set_defaults(func=cmd_export)
    return p


def cmd_export(args) -> int:
    from distill_gui.core.export import export_model

    as_json = args.events == "json"

    def on_progress(progress) -> None:
        if as_json:
            print(progress.to_json(), flush=True)
        else:
            print(f"[{progress.fraction:4.0%}] {progress.message}", file=sys.stderr, flush=True)

    result = export_model(args.source, args.kind, args.quant, args.out, args.force, on_progress=on_progress)
    if as_json:
        print(result.to_json(), flush=True)
    else:
        for note in result.notes:
            print(f"note: {note}", file=sys.stderr)
        if result.verification:
            print(result.verification, file=sys.stderr)
        if result.command:
            print(f"run it: {result.command}", file=sys.stderr)
        print(result.folder)
    return 1 if result.verified is False else 0
