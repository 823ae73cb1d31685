"""Semantic versions and the constraint syntax Flux and Helm accept (Masterminds/semver).

`1.x`, `1.2.*`, `~1.2`, `^1.2`, `>=1.0.0 <2.0.0`, `>=1, <2`, `1.0 || 2.0`, `*`, exact versions.
Pre-releases match only a constraint that names a pre-release, as in Helm.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

_VERSION = re.compile(
    r"^v?(\d+)(?:\.(\d+))?(?:\.(\d+))?(?:-([0-9A-Za-z.-]+))?(?:\+[0-9A-Za-z.-]+)?$")
_TERM = re.compile(r"^(=|!=|>=|<=|>|<|~>|~|\^)?\s*(v?[0-9xX*][0-9A-Za-z.*+-]*)$")


@dataclass(frozen=True, order=True)
class Version:
    major: int
    minor: int
    patch: int
    pre: tuple = ()  # empty sorts after any pre-release: see key()

    @property
    def key(self) -> tuple:
        pre = tuple((0, int(p), "") if p.isdigit() else (1, 0, p) for p in self.pre)
        return (self.major, self.minor, self.patch, 0 if self.pre else 1, pre)

    def __str__(self) -> str:
        text = f"{self.major}.{self.minor}.{self.patch}"
        return f"{text}-{'.'.join(self.pre)}" if self.pre else text


def parse(text: str) -> Version | None:
    match = _VERSION.match(text.strip())
    if not match:
        return None
    major, minor, patch, pre = match.groups()
    return Version(int(major), int(minor or 0), int(patch or 0),
                   tuple(pre.split(".")) if pre else ())


def is_constraint(text: str) -> bool:
    """True when `text` is a range rather than one exact version."""
    return parse(text) is None or text.strip() == ""


def matches(constraint: str, version: Version) -> bool:
    """Whether `version` satisfies `constraint`; ValueError when the constraint is malformed."""
    constraint = constraint.strip() or "*"
    alternatives = [part.strip() for part in constraint.split("||")]
    return any(_all_match(alt, version) for alt in alternatives)


def best(constraint: str, candidates: list[str]) -> str | None:
    """The highest candidate version string satisfying the constraint."""
    parsed = [(parse(c), c) for c in candidates]
    fitting = [(v, c) for v, c in parsed if v is not None and matches(constraint, v)]
    return max(fitting, key=lambda pair: pair[0].key)[1] if fitting else None


def _all_match(constraint: str, version: Version) -> bool:
    terms = [t for t in re.split(r"\s*,\s*|\s+(?=[=!<>~^v\d*xX])", constraint) if t]
    allows_pre = any("-" in t for t in terms)
    if version.pre and not allows_pre:
        return False
    return all(_term_match(term, version) for term in terms)


def _term_match(term: str, version: Version) -> bool:
    match = _TERM.match(term.strip())
    if not match:
        raise ValueError(f"'{term}' is not a version constraint")
    op, text = match.group(1) or "=", match.group(2)
    if text in ("*", "x", "X"):
        return op in ("=", ">=", "<=")
    parts = text.lstrip("v").split("-", 1)[0].split(".")
    wild = next((i for i, p in enumerate(parts) if p in ("x", "X", "*")), len(parts))
    fixed = [int(p) for p in parts[:wild]]
    base = parse(".".join(str(n) for n in fixed) + ("-" + text.split("-", 1)[1]
                                                   if "-" in text and wild == len(parts) else ""))
    if base is None:
        raise ValueError(f"'{term}' is not a version constraint")
    given = len(fixed) if wild < len(parts) else len(parts)
    if op == "=" and given < 3:
        return _prefix(version) [:given] == tuple(fixed)
    if op in ("~", "~>"):
        upper = _bump(base, 1 if given >= 2 else 0)
        return _ge(version, base) and _lt(version, upper)
    if op == "^":
        level = 0 if base.major else (1 if base.minor or given < 3 else 2)
        return _ge(version, base) and _lt(version, _bump(base, level))
    if given < 3 and op in (">", "<="):
        upper = _bump(base, given - 1)  # >1.2 means >=1.3.0; <=1.2 means <1.3.0
        return _ge(version, upper) if op == ">" else _lt(version, upper)
    return {"=": lambda: version.key == base.key, "!=": lambda: version.key != base.key,
            ">": lambda: version.key > base.key, "<": lambda: _lt(version, base),
            ">=": lambda: _ge(version, base), "<=": lambda: version.key <= base.key}[op]()


def _prefix(version: Version) -> tuple[int, int, int]:
    return (version.major, version.minor, version.patch)


def _bump(base: Version, level: int) -> Version:
    if level <= 0:
        return Version(base.major + 1, 0, 0)
    if level == 1:
        return Version(base.major, base.minor + 1, 0)
    return Version(base.major, base.minor, base.patch + 1)


def _ge(a: Version, b: Version) -> bool:
    return a.key >= b.key


def _lt(a: Version, b: Version) -> bool:
    # An upper bound without a pre-release excludes that version's pre-releases too.
    if not b.pre and a.pre and _prefix(a) == _prefix(b):
        return False
    return a.key < b.key
