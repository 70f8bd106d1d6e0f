"""A model's licence, and what a teacher's licence says about training another model on its outputs.

Whether a teacher's outputs may train a student depends on the teacher's licence: MIT and Apache
teachers made open distillation possible; some licences require a derived model's name to carry the
teacher's, some forbid commercial use, some forbid improving other models. :func:`detect_licence`
reads a model's licence from (in order) its model card's front matter (``license:`` in ``README.md``),
``config.json``, GGUF metadata ``general.license`` or the first lines of a ``LICENSE`` file.
:data:`KNOWN_LICENCES` is a small table of licences and their terms in plain words; :func:`teacher_notice`
turns it into the sentence shown before a run starts and written into the exported model card. This
informs, it never blocks, and it is not legal advice: the licence text is what counts.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass
from pathlib import Path


@dataclass(frozen=True)
class LicenceTerms:
    """What one licence says about a model trained on (or derived from) a model under it."""

    key: str
    """The Hugging Face licence identifier (``mit``, ``llama3.1``, ...)."""
    name: str
    commercial: bool
    """Commercial use of the model (and of what is derived from it) is allowed."""
    trains_other_models: bool
    """Its outputs may be used to train or improve other models."""
    name_rule: str | None = None
    """What a derived model's name must carry, when the licence says so."""
    terms: str = ""
    """Other terms a derived model inherits, in plain words."""

    @property
    def has_terms(self) -> bool:
        """True when a student distilled from such a teacher inherits something beyond keeping a notice."""
        return not self.commercial or not self.trains_other_models or bool(self.name_rule) or bool(self.terms)

    def plain_words(self) -> str:
        """The terms that matter for a distilled student, in one or two sentences."""
        parts = []
        if not self.trains_other_models:
            parts.append("it forbids using the model or its outputs to train or improve other models")
        if not self.commercial:
            parts.append("it allows no commercial use")
        if self.name_rule:
            parts.append(self.name_rule)
        if self.terms:
            parts.append(self.terms)
        if not parts:
            return f"{self.name}: permissive; keep its copyright and licence notice."
        return f"{self.name}: " + "; ".join(parts) + "."


def _terms(
    key: str, name: str, *, commercial: bool = True, trains: bool = True, name_rule: str | None = None, terms: str = ""
) -> LicenceTerms:
    return LicenceTerms(key=key, name=name, commercial=commercial, trains_other_models=trains, name_rule=name_rule, terms=terms)


_LLAMA3X_NAME = 'a model trained with it that you share must have "Llama" at the start of its name and say "Built with Llama"'
_OPENRAIL = "its use restrictions pass on to derived models and must be included when you share them"

KNOWN_LICENCES: dict[str, LicenceTerms] = {
    t.key: t
    for t in (
        _terms("mit", "MIT License"),
        _terms("apache-2.0", "Apache License 2.0"),
        _terms("bsd-3-clause", "BSD 3-Clause License"),
        _terms("bsd-2-clause", "BSD 2-Clause License"),
        _terms("cc-by-4.0", "Creative Commons Attribution 4.0"),
        _terms(
            "cc-by-sa-4.0", "Creative Commons Attribution-ShareAlike 4.0", terms="a derived model must be shared under the same licence"
        ),
        _terms("cc-by-nc-4.0", "Creative Commons Attribution-NonCommercial 4.0", commercial=False),
        _terms(
            "cc-by-nc-sa-4.0",
            "Creative Commons Attribution-NonCommercial-ShareAlike 4.0",
            commercial=False,
            terms="a derived model must be shared under the same licence",
        ),
        _terms("cc-by-nc-nd-4.0", "Creative Commons Attribution-NonCommercial-NoDerivatives 4.0", commercial=False, trains=False),
        _terms("openrail", "OpenRAIL", terms=_OPENRAIL),
        _terms("openrail++", "OpenRAIL++", terms=_OPENRAIL),
        _terms("bigscience-openrail-m", "BigScience OpenRAIL-M", terms=_OPENRAIL),
        _terms("creativeml-openrail-m", "CreativeML OpenRAIL-M", terms=_OPENRAIL),
        _terms(
            "llama2",
            "Llama 2 Community License",
            trains=False,
            terms="services with over 700 million monthly users need a licence from Meta",
        ),
        _terms(
            "llama3",
            "Meta Llama 3 Community License",
            trains=False,
            name_rule='a model trained with it that you share must have "Llama 3" at the start of its name',
            terms="services with over 700 million monthly users need a licence from Meta",
        ),
        _terms(
            "llama3.1",
            "Llama 3.1 Community License",
            name_rule=_LLAMA3X_NAME,
            terms="services with over 700 million monthly users need a licence from Meta",
        ),
        _terms(
            "llama3.2",
            "Llama 3.2 Community License",
            name_rule=_LLAMA3X_NAME,
            terms="services with over 700 million monthly users need a licence from Meta",
        ),
        _terms(
            "llama3.3",
            "Llama 3.3 Community License",
            name_rule=_LLAMA3X_NAME,
            terms="services with over 700 million monthly users need a licence from Meta",
        ),
        _terms(
            "llama4",
            "Llama 4 Community License",
            name_rule=_LLAMA3X_NAME,
            terms="services with over 700 million monthly users need a licence from Meta",
        ),
        _terms(
            "gemma",
            "Gemma Terms of Use",
            terms="a model trained on its outputs counts as a Gemma derivative: share it with the Gemma terms and "
            "its prohibited-use policy",
        ),
        _terms(
            "qwen",
            "Qwen License",
            name_rule='a model trained with it that you share must say "Built with Qwen" or "Improved using Qwen"',
            terms="services with over 100 million monthly users need a licence from Alibaba Cloud",
        ),
        _terms(
            "qwen-research",
            "Qwen Research License",
            commercial=False,
            name_rule='a model trained with it that you share must say "Built with Qwen" or "Improved using Qwen"',
        ),
        _terms("deepseek", "DeepSeek License", terms="its use restrictions pass on to derived models"),
    )
}

_ALIASES = {
    "apache 2.0": "apache-2.0",
    "apache-2": "apache-2.0",
    "apache2": "apache-2.0",
    "apache license 2.0": "apache-2.0",
    "mit license": "mit",
    "llama-2": "llama2",
    "llama-3": "llama3",
    "llama-3.1": "llama3.1",
    "llama-3.2": "llama3.2",
    "llama-3.3": "llama3.3",
    "llama-4": "llama4",
    "tongyi-qianwen": "qwen",
    "qwen-license": "qwen",
}

# The first lines of a LICENSE file, for folders whose model card names no licence.
_LICENCE_FILE_HEADINGS = (
    (re.compile(r"^\s*MIT License", re.I | re.M), "mit"),
    (re.compile(r"Apache License\s*\n?\s*Version 2\.0", re.I), "apache-2.0"),
    (re.compile(r"LLAMA 2 COMMUNITY LICENSE", re.I), "llama2"),
    (re.compile(r"META LLAMA 3 COMMUNITY LICENSE", re.I), "llama3"),
    (re.compile(r"Llama 3\.1 Community License", re.I), "llama3.1"),
    (re.compile(r"Llama 3\.2 Community License", re.I), "llama3.2"),
    (re.compile(r"Llama 3\.3 Community License", re.I), "llama3.3"),
    (re.compile(r"Llama 4 Community License", re.I), "llama4"),
    (re.compile(r"Gemma Terms of Use", re.I), "gemma"),
    (re.compile(r"Qwen RESEARCH LICENSE", re.I), "qwen-research"),
    (re.compile(r"Qwen LICENSE AGREEMENT|Tongyi Qianwen LICENSE", re.I), "qwen"),
)


@dataclass(frozen=True)
class DetectedLicence:
    """A model's licence as found on disk."""

    key: str
    """The licence identifier as written (lower case), or ``unknown`` when none was found."""
    source: str
    """Where it was found (``README.md front matter``, ``config.json``, ``GGUF general.license``, ``LICENSE``)."""
    link: str | None = None
    """``license_link`` or ``license_name`` from the model card, for ``other`` licences."""

    @property
    def terms(self) -> LicenceTerms | None:
        """The table's entry for this licence, or None for licences the table does not know."""
        return KNOWN_LICENCES.get(self.key)

    @property
    def known(self) -> bool:
        return self.key != "unknown"

    def label(self) -> str:
        """A short label for a table or a page: the licence's name and where it was read."""
        if not self.known:
            return "no licence found"
        terms = self.terms
        name = terms.name if terms else self.key + (f" ({self.link})" if self.link else "")
        return f"{name} (from {self.source})"


UNKNOWN = DetectedLicence(key="unknown", source="")


def normalise_key(value: str) -> str:
    """A licence identifier in the table's spelling (``Apache 2.0`` -> ``apache-2.0``)."""
    key = " ".join(str(value).strip().lower().split())
    return _ALIASES.get(key, key)


def _front_matter(text: str) -> dict:
    """The YAML block at the top of a model card (between two ``---`` lines), or {}."""
    import yaml

    match = re.match(r"\A\ufeff?---\s*\n(.*?)\n---\s*(\n|\Z)", text, re.S)
    if not match:
        return {}
    try:
        data = yaml.safe_load(match.group(1))
    except yaml.YAMLError:
        return {}
    return data if isinstance(data, dict) else {}


def licence_from_card(text: str) -> DetectedLicence | None:
    """The licence named in a model card's front matter (``license:``), or None."""
    data = _front_matter(text)
    value = data.get("license")
    if isinstance(value, list):
        value = value[0] if value else None
    if not value or not isinstance(value, str):
        return None
    link = data.get("license_name") or data.get("license_link")
    return DetectedLicence(key=normalise_key(value), source="README.md front matter", link=str(link) if link else None)


def licence_from_gguf(file: Path) -> DetectedLicence | None:
    """``general.license`` from a GGUF file's metadata (read from the header in plain Python: gguf's GGUFReader
    parses every field with numpy, seconds for a whole vocabulary), or None."""
    from distill_gui.core.gguf_header import gguf_metadata

    value = gguf_metadata(file, ("general.license",)).get("general.license")
    return DetectedLicence(key=normalise_key(value), source="GGUF general.license") if isinstance(value, str) and value else None


def licence_from_file(text: str) -> DetectedLicence | None:
    """The licence whose heading starts a LICENSE file, or None."""
    head = text[:4000]
    for pattern, key in _LICENCE_FILE_HEADINGS:
        if pattern.search(head):
            return DetectedLicence(key=key, source="LICENSE")
    return None


def _read(path: Path, limit: int = 200_000) -> str | None:
    try:
        with open(path, encoding="utf-8", errors="replace") as f:
            return f.read(limit)
    except OSError:
        return None


def detect_licence(path: str | Path) -> DetectedLicence:
    """The licence of a model folder or GGUF file; :data:`UNKNOWN` when nothing on disk names one."""
    path = Path(path).expanduser()
    if path.is_file() and path.suffix.lower() == ".gguf":
        found = licence_from_gguf(path)
        if found is not None:
            return found
        return detect_licence(path.parent) if (path.parent / "README.md").is_file() else UNKNOWN
    if not path.is_dir():
        return UNKNOWN
    card = _read(path / "README.md")
    if card:
        found = licence_from_card(card)
        if found:
            return found
    config = _read(path / "config.json")
    if config:
        try:
            value = json.loads(config).get("license")
        except (ValueError, AttributeError):
            value = None
        if isinstance(value, str) and value:
            return DetectedLicence(key=normalise_key(value), source="config.json")
    for gguf in sorted(path.glob("*.gguf"))[:1]:
        found = licence_from_gguf(gguf)
        if found:
            return found
    for name in ("LICENSE", "LICENSE.txt", "LICENSE.md", "LICENCE", "license.txt"):
        text = _read(path / name, 8000)
        if text:
            found = licence_from_file(text)
            if found:
                return found
    return UNKNOWN


def teacher_notice(licence: DetectedLicence) -> str | None:
    """What to tell a person before distilling from a teacher under ``licence``; None when there is nothing to say.

    Permissive licences say nothing; licences with terms say them in plain words; an unknown or
    unfamiliar licence asks the person to read it before sharing the student.
    """
    if not licence.known:
        return "The teacher names no licence; check its terms before you share a student trained from it."
    terms = licence.terms
    if terms is None:
        return (
            f"The teacher's licence is {licence.key!r}"
            f"{' (' + licence.link + ')' if licence.link else ''}; read it before you share a student trained from it."
        )
    if not terms.has_terms:
        return None
    return "The teacher's licence has terms for models trained from it — " + terms.plain_words()
