"""Code sets: the ICD-10-CM codes that exist and the billable (leaf) ones, read once from the data file.

The code set is the one the ``simple-icd-10-cm`` package ships, read straight from its
``code-list-*.txt`` file without importing the package: the import costs about 1.2 s, 224 MB
and 594,000 objects for the garbage collector per process, where two frozensets of short
strings cost a few MB and about 0.1 s on first use.

A code is billable when no other code in the list extends it (``E11`` has ``E119``, so it is
a category; ``E119`` is a leaf). Chapters (``1``) and blocks (``A00-A09``) are not codes a
claim can carry and are left out. Codes are kept without dots, upper case.
"""

from __future__ import annotations

import bisect
import importlib.util
import re
from dataclasses import dataclass
from functools import cache
from pathlib import Path

from ledger.errors import ConfigurationError

ICD10CM_PACKAGE = "simple_icd_10_cm"
_CODE = re.compile(r"[A-Z][0-9A-Z]{2,6}")
_DATA_FILE_NAME = re.compile(r"""_all_codes_package_file_name\s*:\s*str\s*=\s*['"]([^'"]+)['"]""")


@dataclass(frozen=True, slots=True)
class Icd10CmCodeSet:
    """The ICD-10-CM codes of one release: every category and subcategory, and the billable ones."""

    release: str
    """Named after the data file, e.g. ``April 2026`` for ``code-list-April-2026.txt``."""
    codes: frozenset[str]
    billable: frozenset[str]
    _billable_sorted: tuple[str, ...]

    def is_billable(self, code: str) -> bool:
        return code in self.billable

    def exists(self, code: str) -> bool:
        return code in self.codes

    def billable_under(self, code: str, limit: int = 3) -> tuple[str, ...]:
        """The first ``limit`` billable codes that extend ``code`` (what to use instead of a category)."""
        found: list[str] = []
        index = bisect.bisect_left(self._billable_sorted, code)
        while index < len(self._billable_sorted) and len(found) < limit:
            candidate = self._billable_sorted[index]
            if not candidate.startswith(code):
                break
            if candidate != code:
                found.append(candidate)
            index += 1
        return tuple(found)


def parse_icd10cm_code_list(text: str, release: str) -> Icd10CmCodeSet:
    """Build the code set from the text of a ``code-list`` file (one code a line, chapters and blocks too)."""
    codes = frozenset(token for token in text.split() if _CODE.fullmatch(token))
    if not codes:
        raise ConfigurationError(
            f"the ICD-10-CM code list {release} holds no codes: reinstall {ICD10CM_PACKAGE}",
            details={"release": release},
        )
    extended = {code[:size] for code in codes for size in range(3, len(code))}
    billable = codes - extended
    return Icd10CmCodeSet(release=release, codes=codes, billable=billable, _billable_sorted=tuple(sorted(billable)))


def icd10cm_data_file() -> Path:
    """The code list the installed ``simple-icd-10-cm`` uses, found without importing it."""
    spec = importlib.util.find_spec(ICD10CM_PACKAGE)
    if spec is None or not spec.submodule_search_locations:
        raise ConfigurationError(
            f"the ICD-10-CM code set needs the package {ICD10CM_PACKAGE}: pip install simple-icd-10-cm",
        )
    package_dir = Path(next(iter(spec.submodule_search_locations)))
    data_dir = package_dir / "data"
    # The package names the file it loads in a module constant; follow it so an upgrade is picked up.
    module = package_dir / "simple_icd_10_cm.py"
    named = _DATA_FILE_NAME.search(module.read_text(encoding="utf-8")) if module.is_file() else None
    if named and (data_dir / named.group(1)).is_file():
        return data_dir / named.group(1)
    candidates = sorted(data_dir.glob("code-list-*.txt"))
    if len(candidates) != 1:
        raise ConfigurationError(
            f"cannot tell which ICD-10-CM code list to use in {data_dir}: found {len(candidates)}",
            details={"candidates": [c.name for c in candidates]},
        )
    return candidates[0]


def load_icd10cm(path: Path | None = None) -> Icd10CmCodeSet:
    """Read a code list file (the package's by default)."""
    path = path or icd10cm_data_file()
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as exc:
        raise ConfigurationError(
            f"cannot read the ICD-10-CM code list {path}: {exc.strerror}", details={"path": str(path)}
        ) from exc
    return parse_icd10cm_code_list(text, release=path.stem.removeprefix("code-list-").replace("-", " "))


@cache
def icd10cm() -> Icd10CmCodeSet:
    """The installed ICD-10-CM code set, loaded once per process on first use."""
    return load_icd10cm()


def billable_icd10cm_codes() -> frozenset[str]:
    """The billable (leaf) ICD-10-CM codes, without dots."""
    return icd10cm().billable


def display_icd10cm(code: str) -> str:
    """``E119`` -> ``E11.9``: how a clerk reads it."""
    return f"{code[:3]}.{code[3:]}" if len(code) > 3 else code
