"""Recipes: the distillation playbook in plain words, each a config fragment (a method, or ``stages``).

A recipe names a way to distil ("Logit KD", "Traces, then RL with verifiable rewards", ...), explains it
in a line, and says what it sets in a config: the method (``method.kind`` and a few of its settings),
the ``stages`` run in order (each stage's student the previous stage's result, see
:mod:`distill_gui.core.training.stages`), and for synthetic data the ``data.mix`` source the teacher's
new questions go into. Everything else (models, data, training, each method's own settings) stays as it
is, so the raw settings remain the place to tune a recipe.

It also says what it needs — a teacher, the teacher's weights, reference answers in the data, a
verifier, a data file made beforehand — and :func:`check_needs` tells which of them a config lacks and
what to do about it. :func:`recipe_of` reads back which recipe a config follows (None: a custom
config), so a saved YAML opens on the recipe it was made with. The app's Method page and
``distill-gui train --recipe NAME`` both use this module.
"""

from __future__ import annotations

import copy
import shlex
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Callable

from distill_gui.core.schema import ConfigError

if TYPE_CHECKING:
    from distill_gui.core.config import RunConfig

# ---- What a recipe needs

TEACHER = "teacher"
"""A teacher that writes text: teacher.path, or a served one (teacher.url)."""
TEACHER_WEIGHTS = "teacher_weights"
"""The teacher's weights on this machine (teacher.path): its next-token distributions are the labels."""
REFERENCES = "references"
"""Training data with reference answers ('#### 42', \\boxed{}), for the verifier to check against."""
VERIFIER = "verifier"
"""A registered answer checker (the method's ``checker``)."""
SYNTHETIC_DATA = "synthetic_data"
"""The data.mix files, made beforehand by ``distill-gui generate-data --synthetic``."""

NEED_WORDS = {
    TEACHER: "a teacher (Models page)",
    TEACHER_WEIGHTS: "the teacher's weights on this machine",
    REFERENCES: "training data with reference answers ('#### 42')",
    VERIFIER: "an answer checker (the verifier)",
    SYNTHETIC_DATA: "the synthetic data file",
}

SYNTHETIC_WEIGHT = 0.5
"""The synthetic source's weight in data.mix; data.train counts 1, so a third of the rows are synthetic."""
SYNTHETIC_QUESTIONS = 200
"""New questions the suggested ``generate-data --synthetic`` command makes."""


@dataclass(frozen=True)
class NeedCheck:
    """One need of a recipe against a config: met (True), not met (False, ``text`` says what to do), or not known yet (None)."""

    need: str
    met: bool | None
    text: str


@dataclass(frozen=True)
class Recipe:
    """A way to distil: what it is called, what it does, what it sets and what it needs."""

    name: str
    """The value of ``--recipe`` (a word)."""
    title: str
    """Plain words, e.g. "Traces, then RL with verifiable rewards"."""
    summary: str
    """One line on what it does."""
    method: dict
    """The method section it sets: ``kind`` and any settings of that method (e.g. ``{"kind": "kd", "kd": {"on_policy": 0.5}}``);
    for stages, the last stage's method (whose settings the Method page then shows)."""
    stages: tuple[dict, ...] = ()
    """The stages it runs in order (each ``{name, method: {kind}}``); empty: one run."""
    needs: tuple[str, ...] = ()
    """What it cannot work without (:data:`NEED_WORDS` keys)."""
    how: str = ""
    """What to do before training, when it takes a step outside the run (e.g. making data)."""
    mixes: bool | None = None
    """True: it mixes the teacher's synthetic questions into the data (``data.mix``); False: it trains on data.train
    alone (choosing it empties data.mix); None: data.mix is left as it is."""
    matches_method: Callable[[dict], bool] = field(default=lambda method: True, compare=False)
    """Beyond ``kind``: whether a config's method section is this recipe's (e.g. on_policy above 0)."""

    def stage_kinds(self) -> list[str]:
        return [str(stage["method"]["kind"]) for stage in self.stages]

    def fragment(self, config: dict) -> dict:
        """What choosing this recipe sets in ``config`` (a config mapping): method, stages and data.mix."""
        out: dict = {"method": copy.deepcopy(self.method), "stages": [copy.deepcopy(s) for s in self.stages]}
        data = config.get("data") or {}
        if self.mixes:
            mix = [dict(m) for m in data.get("mix") or []]
            out["data"] = {"mix": mix or [{"path": synthetic_path(str(data.get("train") or "")), "weight": SYNTHETIC_WEIGHT}]}
        elif self.mixes is False:
            out["data"] = {"mix": []}
        return out

    def describe_stages(self) -> list[str]:
        """The stages in order, in words (one entry for a one-run recipe)."""
        from distill_gui.core import methods

        if not self.stages:
            return [methods.get(self.method["kind"]).title]
        return [f"{stage['name']}: {methods.get(stage['method']['kind']).title}" for stage in self.stages]


def _on_policy(method: dict) -> float:
    try:
        return float((method.get("kd") or {}).get("on_policy") or 0.0)
    except (TypeError, ValueError):
        return 0.0


RECIPES: tuple[Recipe, ...] = (
    Recipe(
        name="traces",
        title="Reasoning traces, R1-Distill style",
        summary="The teacher writes worked solutions to your questions, the verifier keeps the right ones, and the "
        "student is fine-tuned on them (SFT). Works across tokenizers and with a served teacher.",
        method={"kind": "sft"},
        needs=(TEACHER,),
        mixes=False,
        how="Make the traces first with Generate traces below (or distill-gui generate-data); Use as training data "
        "puts them in data.train.",
    ),
    Recipe(
        name="logit_kd",
        title="Logit KD",
        summary="The student learns the teacher's whole next-token distribution on your data (soft labels): the most "
        "signal per token. Needs the teacher's weights and the same tokenizer.",
        method={"kind": "kd", "kd": {"on_policy": 0.0}},
        needs=(TEACHER_WEIGHTS,),
        matches_method=lambda method: _on_policy(method) == 0,
    ),
    Recipe(
        name="on_policy_kd",
        title="On-policy KD",
        summary="The student writes its own answers and the teacher scores every token of them (GKD), so it learns to "
        "fix its own mistakes; half the batches are the student's, half the data's.",
        method={"kind": "kd", "kd": {"on_policy": 0.5}},
        needs=(TEACHER_WEIGHTS,),
        matches_method=lambda method: _on_policy(method) > 0,
    ),
    Recipe(
        name="self_distill",
        title="Self-distillation",
        summary="The student answers each question several times, the verifier keeps its correct answers and it is "
        "fine-tuned on them, for a few rounds. No teacher; the student must already get some right.",
        method={"kind": "self_distill"},
        needs=(REFERENCES, VERIFIER),
    ),
    Recipe(
        name="traces_rlvr",
        title="Traces, then RL with verifiable rewards",
        summary="Two stages: SFT on the teacher's reasoning traces, then RL (GRPO) from that student, rewarded when "
        "the verifier accepts its answer — the R1-Distill → RL recipe.",
        method={"kind": "rlvr"},
        # The RL stage's optimizer steps take 8 micro-batches: with the default batch of 8 answers, 4 per question,
        # 16 questions a step (with fewer, GRPO's updates are mostly noise: see rlvr.FEW_QUESTIONS).
        stages=(
            {"name": "traces", "method": {"kind": "sft"}},
            {"name": "rlvr", "method": {"kind": "rlvr"}, "training": {"gradient_accumulation_steps": 8}},
        ),
        needs=(TEACHER, REFERENCES, VERIFIER),
        how="data.train should hold the teacher's traces (Generate traces below); their '#### answer' lines are the "
        "references the RL stage checks against.",
    ),
    Recipe(
        name="synthetic",
        title="Synthetic data from the teacher",
        summary="The teacher writes new questions like yours and labels them (verifier, or majority vote of its "
        "answers); the student is fine-tuned on your data mixed with them (the Phi-4 pattern).",
        method={"kind": "sft"},
        needs=(TEACHER, SYNTHETIC_DATA),
        mixes=True,
        how="Make the synthetic questions first with the command below (resumable); data.mix mixes them with data.train.",
    ),
)


# ---- Finding recipes


def names() -> tuple[str, ...]:
    return tuple(r.name for r in RECIPES)


def get(name: str) -> Recipe:
    """The recipe called ``name``; :class:`ConfigError` naming the recipes when there is none."""
    for recipe in RECIPES:
        if recipe.name == name:
            return recipe
    raise ConfigError(f"recipe {name!r} is not a recipe; choose one of {', '.join(names())}")


def _stage_signature(config: dict) -> list[tuple[str, str]]:
    kind = str((config.get("method") or {}).get("kind") or "")
    out = []
    for index, stage in enumerate(config.get("stages") or []):
        if not isinstance(stage, dict):
            return [("?", "?")]
        method = stage.get("method") or {}
        out.append((str(stage.get("name") or f"stage{index + 1}"), str(method.get("kind") or kind)))
    return out


def recipe_of(config: "RunConfig | dict") -> Recipe | None:
    """The recipe ``config`` follows, or None for a custom one.

    A staged config follows a recipe when it runs the same methods under the same stage names in the
    same order; a one-run config when its method is the recipe's (and, for KD, on-policy or not as the
    recipe is) and, for the SFT recipes, it mixes in data (data.mix) exactly when the recipe does. Tuned settings do not
    matter: a recipe with another learning rate or λ is still that recipe.
    """
    from distill_gui.core.config import config_to_dict

    data = config if isinstance(config, dict) else config_to_dict(config)
    stages = _stage_signature(data)
    method = data.get("method") or {}
    mixed = bool((data.get("data") or {}).get("mix"))
    for recipe in RECIPES:
        if recipe.stages or stages:
            if stages == [(s["name"], s["method"]["kind"]) for s in recipe.stages]:
                return recipe
            continue
        if recipe.mixes is not None and mixed != recipe.mixes:
            continue
        if method.get("kind") == recipe.method["kind"] and recipe.matches_method(method):
            return recipe
    return None


def apply(recipe: Recipe, config: "RunConfig", keep: tuple[str, ...] = ()) -> "RunConfig":
    """``config`` following ``recipe`` (a new config); keys named in ``keep`` (dotted, e.g. from command-line
    overrides) keep their value."""
    from distill_gui.core.config import config_from_dict, config_to_dict

    data = config_to_dict(config)
    _merge(data, recipe.fragment(data), keep, "")
    return config_from_dict(data)


def _merge(base: dict, over: dict, keep: tuple[str, ...], prefix: str) -> None:
    for key, value in over.items():
        dotted = f"{prefix}{key}"
        if any(dotted == k or k.startswith(dotted + ".") and not isinstance(value, dict) for k in keep):
            continue
        if isinstance(value, dict) and isinstance(base.get(key), dict):
            _merge(base[key], value, keep, dotted + ".")
        else:
            base[key] = value


# ---- Needs


def synthetic_path(train: str) -> str:
    """Where the synthetic questions made from ``train`` go: beside it, ``<name>.synthetic.jsonl``."""
    if not train:
        return "synthetic.jsonl"
    path = Path(train)
    return str(path.with_name(f"{path.stem or path.name}.synthetic.jsonl"))


def synthetic_command(config: "RunConfig", out: str) -> str:
    """The ``distill-gui generate-data --synthetic`` command that makes ``out`` from the config's data and teacher."""
    t = config.teacher
    if t.url and not t.path:  # a served teacher writes the questions and the answers
        teacher = f"--teacher-url {shlex.quote(t.url)}" + (f" --teacher-model {shlex.quote(t.model)}" if t.model else "")
        teacher += f" --api-key-env {shlex.quote(t.api_key_env)}" if t.api_key_env else ""
    else:
        teacher = f"--teacher {shlex.quote(t.path or 'TEACHER')}"
    seeds = config.data.train or "SEEDS.jsonl"
    return (
        f"distill-gui generate-data --synthetic {SYNTHETIC_QUESTIONS} --generator fewshot {teacher} "
        f"--data {shlex.quote(seeds)} --out {shlex.quote(out)} --num-samples 4 --temperature 0.8 --threshold 0.5"
    )


def _checker_sections(recipe: Recipe, config: "RunConfig") -> list[tuple[str, str]]:
    """(key, checker name) of each method in the recipe that verifies answers."""
    kinds = recipe.stage_kinds() or [recipe.method["kind"]]
    out = []
    for kind in kinds:
        section = getattr(config.method, kind, None)
        checker = getattr(section, "checker", None)
        if checker is not None:
            out.append((f"method.{kind}.checker", str(checker)))
    return out


def data_has_references(config: "RunConfig") -> bool | None:
    """Whether the training data (data.train or a data.mix source) has a row with a reference answer;
    None when it is not known here (no data, a file too large to read at once, a folder or a hub id)."""
    from distill_gui.core.methods.rlvr import _has_references

    paths = ([config.data.train] if config.data.train else []) + [s.path for s in config.data.mix if s.path]
    found = [_has_references(p, config) for p in paths]
    if any(f is True for f in found):
        return True
    if found and all(f is False for f in found):
        return False
    return None


def check_needs(recipe: Recipe, config: "RunConfig", references: bool | None = None, read_data: bool = True) -> list[NeedCheck]:
    """Each need of ``recipe`` against ``config``.

    ``references`` says whether the data has reference answers when the caller knows (the app has read
    the data already); None reads small local data files here (:func:`data_has_references`) unless
    ``read_data`` is False (the app's GUI thread reads no data files): then it is not known.
    """
    from distill_gui.core.verify import checker_names

    out = []
    for need in recipe.needs:
        if need == TEACHER:
            met = bool(config.teacher.path or config.teacher.url)
            if met:
                text = "a teacher is set"
            elif recipe.mixes:
                text = (
                    "No teacher is set to write and label the synthetic questions: choose one on the Models page "
                    "(teacher.path, or a served teacher.url)."
                )
            else:
                text = (
                    "No teacher is set to write the traces: choose one on the Models page (teacher.path, or a served "
                    "teacher.url), unless data.train already holds the teacher's traces."
                )
            out.append(NeedCheck(need, met, text))
        elif need == TEACHER_WEIGHTS:
            on_policy = _on_policy(recipe.method) > 0
            cached = bool(config.teacher.url) and not on_policy and bool(getattr(config.method.kd, "cache_teacher", False))
            met = bool(config.teacher.path) or cached
            if config.teacher.path:
                text = "the teacher's weights are set"
            elif cached:
                text = "the served teacher fills the teacher cache (method.kd.cache_teacher)"
            elif config.teacher.url and not on_policy:
                text = (
                    "No teacher weights: logit KD needs the teacher's next-token distributions. Choose a local teacher "
                    "(teacher.path), or turn on method.kd.cache_teacher so the served teacher's log-probabilities fill the cache."
                )
            else:
                text = (
                    "No teacher weights: choose a local teacher on the Models page (teacher.path). This recipe scores "
                    "tokens with the teacher's own model"
                    + (", the student's own answers included; a served teacher cannot." if on_policy else ".")
                )
            out.append(NeedCheck(need, met, text))
        elif need == REFERENCES:
            found = references
            if found is None and read_data and (config.data.train or config.data.mix):
                found = data_has_references(config)
            if found is None:
                text = "reference answers: not checked yet (choose the training data on the Data page)"
            elif found:
                text = "the training data has reference answers"
            else:
                text = (
                    "The training data has no reference answers for the verifier to check against (the text after "
                    "'####' in the completion, a \\boxed{} answer, or a bare answer). Give question/answer data whose "
                    "answers end in '#### <answer>' (GSM8K style), or choose Reasoning traces or Logit KD."
                )
            out.append(NeedCheck(need, found, text))
        elif need == VERIFIER:
            known = checker_names()
            bad = [(key, name) for key, name in _checker_sections(recipe, config) if name not in known]
            text = (
                f"{bad[0][0]}: {bad[0][1]!r} is not a checker; choose one of {', '.join(known)}"
                if bad
                else "the verifier: " + ", ".join(sorted({name for _, name in _checker_sections(recipe, config)}) or ["numeric"])
            )
            out.append(NeedCheck(need, not bad, text))
        elif need == SYNTHETIC_DATA:
            paths = [s.path for s in config.data.mix if s.path] or [synthetic_path(config.data.train)]
            missing = [p for p in paths if not Path(p).expanduser().exists()]
            if missing:
                text = f"{missing[0]} does not exist yet; make it with:\n{synthetic_command(config, missing[0])}"
            else:
                text = "the synthetic data is there: " + ", ".join(paths)
            out.append(NeedCheck(need, not missing, text))
    return out


def unmet(checks: list[NeedCheck]) -> list[NeedCheck]:
    """The needs a config does not meet (not those not known yet)."""
    return [c for c in checks if c.met is False]


def fragment_overrides(recipe: Recipe, config: dict) -> list[str]:
    """The recipe's fragment as ``key=value`` lines (the form of command-line overrides), for showing."""
    import yaml

    lines: list[str] = []

    def walk(node: dict, prefix: str) -> None:
        for key, value in node.items():
            if isinstance(value, dict) and value:
                walk(value, f"{prefix}{key}.")
            else:
                lines.append(
                    f"{prefix}{key}={yaml.safe_dump(value, default_flow_style=True, width=10_000).strip().removesuffix('...').strip()}"
                )

    walk(recipe.fragment(config), "")
    return lines
