"""X12 5010 plumbing shared by the 837 and 835 readers: bytes, envelopes, numbers, dates, where.

An X12 file is read in three steps, the same for every transaction:

1. **Bytes** (:func:`decode_x12`): a file above :data:`MAX_X12_BYTES` is refused before a
   byte of it is looked at (``file_too_large``); bytes that are not UTF-8, or NUL bytes (a
   UTF-16 or UTF-32 file), are refused naming the byte offset (``not_utf8``). X12 is sent in
   ASCII (the basic character set) or UTF-8 (extended); anything else is a different file.
2. **Envelope** (:func:`read_interchange`): ISA/IEA, GS/GE and ST/SE, with their control
   numbers and counts. As the standard has it, an error falls with the envelope it is in:
   a wrong SE01 (segment count) or SE02 refuses that transaction set, a wrong GE01
   (transaction set count) or GE02 that functional group, and the rest of the file is still
   read; a wrong IEA01 (group count) or IEA02, a file without IEA (cut short), or a broken
   ISA refuses the whole file. Refusals are :class:`~ledger.errors.FormatError`, each with
   a :class:`~ledger.formats.SourceRef` naming the segment, its position and the control
   numbers. One interchange per file.
3. **Content**: each transaction set's segments go, one at a time, to a reader the caller
   supplies (:class:`SetReader`: :mod:`ledger.formats.x837`, :mod:`ledger.formats.x835`),
   so that a large file is never held as segments all at once. Its result is kept only once
   the set's SE and its group's GE have checked out.

Segments are split by x12sdk's :class:`~x12sdk.io.X12SegmentReader` (delimiters from the
ISA, one segment at a time); its transaction models are not used: they are about 180 claims/s
on an 837P and one bad claim fails the whole transaction set without a position (see
:mod:`ledger.formats.x837`). The reader is driven over the text already in memory (never a
path, never the environment's buffer size), and beside it this module keeps each segment's
1-based position in the file (ISA is 1; blank lines are not segments) and its character
offsets, so that an 835 transaction set can be hashed from its exact bytes.

Problems inside a claim are :class:`~ledger.errors.FieldProblem`\\ s; their ``field`` names
the X12 location (:func:`field_ref`): ``CLM[12]`` is the CLM segment at position 12, then
``.SV1[15]`` another segment of that claim at position 15, then ``-04`` the element (as in the
reference designator SV104) and ``-2`` the component (SV101-2). ``CLM[12]-02`` is CLM02 of the
claim itself; ``CLM[12].DMG`` a segment the claim needs and does not have.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass, field
from datetime import date
from decimal import Decimal
from io import StringIO
from typing import Generic, NamedTuple, Protocol, TypeVar

# x12sdk runs dotenv.load_dotenv() when it is first imported: the first .env file found upwards
# from the x12sdk package folder (through the virtualenv to the project root and its parents; from
# the working directory in a REPL or under a debugger) is loaded into os.environ, without
# overriding variables already set, so child processes (the embedded node) see it too. The
# gateway's settings read the project's .env anyway; nothing here depends on what it loads (the
# reader below fixes its buffer size rather than read X12_READER_BUFFER_SIZE).
# PYTHON_DOTENV_DISABLED=1 in the environment stops it.
from x12sdk.io import X12SegmentReader
from x12sdk.models import X12Delimiters
from x12sdk.support import X12_IMPLEMENTATION_VERSIONS

from ledger.errors import FieldProblem, FormatError
from ledger.formats import SourceRef

__all__ = [
    "MAX_X12_BYTES",
    "RULES",
    "EnvelopeSpec",
    "Interchange",
    "Segment",
    "SetHeader",
    "SetReader",
    "Where",
    "decode_x12",
    "field_ref",
    "implementation_versions",
    "money_cents",
    "parse_cents",
    "parse_d8",
    "parse_date_value",
    "read_interchange",
    "whole_number",
]

MAX_X12_BYTES = 64 * 1024 * 1024
"""The largest X12 file read (64 MiB, some 250,000 claims); larger ones are refused unread."""

ISA_LENGTH = 106
"""The ISA segment is fixed length: its delimiters are characters 4, 83, 105 and 106."""

_READ_CHUNK = 1 << 20
_BLANK = frozenset(" \t\r\n")
_NUMBER = re.compile(r"-?(?:[0-9]+(?:\.[0-9]*)?|\.[0-9]+)")

RULES: Mapping[str, str] = {
    "file_too_large": f"an X12 file is at most {MAX_X12_BYTES // (1024 * 1024)} MiB",
    "not_utf8": "an X12 file is ASCII or UTF-8 text",
    "x12_isa_invalid": "the file starts with a complete, fixed-length ISA interchange header",
    "x12_structure": "envelope segments come in order: ISA, GS, ST ... SE, GE, IEA",
    "x12_truncated": "the interchange ends with IEA (and every ST with its SE, every GS with its GE)",
    "x12_se_count": "SE01 is the number of segments from ST to SE, both included",
    "x12_ge_count": "GE01 is the number of transaction sets in the functional group",
    "x12_iea_count": "IEA01 is the number of functional groups in the interchange",
    "x12_control_mismatch": "SE02 repeats ST02, GE02 repeats GS06, IEA02 repeats ISA13",
    "x12_version": "the functional group and transaction set are of a version this reader takes",
    "required": "a segment or element the ledger needs is present",
    "unknown_qualifier": "a qualifier (code that says what a value is) is one the guide defines here",
    "money_format": "an amount is a decimal number, e.g. 125.00",
    "money_precision": "an amount has at most 2 decimals (dollars and cents)",
    "money_negative": "an amount is not negative (except in a reversal)",
    "date_invalid": "a date is a real date written CCYYMMDD (RD8: CCYYMMDD-CCYYMMDD)",
    "fractional_units": "units are whole numbers",
    "not_whole_number": "a count or pointer is a whole number",
    "principal_diagnosis": "the principal diagnosis (ABK/BK) is given once, ahead of the others",
    "service_lines_missing": "a claim has at least one service line",
}
"""Rule ids of X12 refusals (:class:`FormatError`) and of problems found while mapping a claim."""


def implementation_versions(prefix: str) -> frozenset[str]:
    """The GS08/ST03 versions x12sdk knows for a guide, e.g. ``"005010X222"`` -> X222, X222A1, X222A2.

    Real 837Ps carry 005010X222A1 and 837Is 005010X223A2 (the versions HIPAA names); x12sdk's
    models are of the later errata (X222A2, X223A3) and map the earlier ones onto them.
    """
    return frozenset(version for version in X12_IMPLEMENTATION_VERSIONS if version.startswith(prefix))


# --- bytes ------------------------------------------------------------------------------------


def _mib(size: int) -> str:
    return f"{size / (1024 * 1024):,.1f} MiB ({size:,} bytes)"


def decode_x12(data: bytes, *, file: str | None = None, max_bytes: int = MAX_X12_BYTES) -> str:
    """The file's text: refused if above ``max_bytes`` (before anything is read), not UTF-8, or NUL bytes.

    A UTF-8 byte order mark is dropped. :class:`FormatError` rules: ``file_too_large``,
    ``not_utf8`` (``details["offset"]`` is the byte offset, the source the segment it is in).
    """
    if not isinstance(data, (bytes, bytearray)):
        raise TypeError(f"an X12 reader takes the file's bytes, not {type(data).__name__}")
    size = len(data)
    if size > max_bytes:
        raise FormatError(
            f"the file is {_mib(size)}; at most {_mib(max_bytes)} is read at once: "
            "split it into smaller interchanges. Nothing of it is taken",
            rule="file_too_large",
            source=SourceRef(file, "ISA", 0),
        )
    # A NUL byte is valid UTF-8 but the sign of UTF-16 or UTF-32 text; whichever comes first is named.
    nul = data.find(b"\x00")
    try:
        text = bytes(data if nul < 0 else data[:nul]).decode("utf-8")
    except UnicodeDecodeError as exc:
        offset = exc.start
        if offset < 2 and data[:2] in (b"\xff\xfe", b"\xfe\xff"):
            why = "a UTF-16 byte order mark: the file is UTF-16 text; X12 is sent as ASCII or UTF-8"
        else:
            why = "not UTF-8: the file must be ASCII or UTF-8 text (was it saved as Latin-1 or Windows-1252?)"
        raise _not_utf8(data, offset, f"byte 0x{data[offset]:02X} at offset {offset:,} is {why}", file) from None
    if nul >= 0:
        why = "the file looks UTF-16 or UTF-32 encoded; X12 is sent as ASCII or UTF-8 text"
        raise _not_utf8(data, nul, f"a NUL byte at offset {nul:,}: {why}", file)
    return text[1:] if text.startswith("\ufeff") else text


def _not_utf8(data: bytes, offset: int, message: str, file: str | None) -> FormatError:
    # Name the segment the byte is in, when the ISA is plain enough to give the terminator.
    segment, position = "ISA", 0
    head = bytes(data[:ISA_LENGTH])
    if len(head) == ISA_LENGTH and head.startswith(b"ISA") and offset >= ISA_LENGTH:
        terminator = head[ISA_LENGTH - 1 : ISA_LENGTH]
        separator = head[3:4]
        begin = data.rfind(terminator, 0, offset) + 1
        position = data.count(terminator, 0, begin) + 1
        name = bytes(data[begin : begin + 4]).split(separator)[0].strip()
        segment = name.decode("ascii", "replace") or "?"
    error = FormatError(
        f"{message}; segment {segment} at position {position}. Nothing of the file is taken",
        rule="not_utf8",
        source=SourceRef(file, segment, position),
    )
    error.details["offset"] = offset
    return error


# --- segments ---------------------------------------------------------------------------------


class Segment(NamedTuple):
    """One segment: its 1-based position in the file, id, elements (``elements[0]`` is the id),
    and the character offsets ``[start, end)`` of its text in the decoded file (terminator included)."""

    position: int
    id: str
    elements: list[str]
    start: int
    end: int

    def element(self, index: int) -> str:
        """Element ``index`` (``SV104`` is 4) as text; ``""`` when absent."""
        elements = self.elements
        return elements[index] if index < len(elements) else ""


class _InMemorySegmentReader(X12SegmentReader):
    """x12sdk's segment reader over text already in memory.

    Its ``__enter__`` treats its input as a file path whenever such a file exists, and reads its
    buffer size from the environment; this one always reads the given text, in 1 MiB chunks.
    (x12sdk 2.2.0: the attributes set here are the ones ``segments()`` uses.)
    """

    def __enter__(self) -> _InMemorySegmentReader:
        self._x12_stream = StringIO(self._x12_input)
        self._buffer_size = _READ_CHUNK
        self.delimiters = X12Delimiters(**self._parse_isa_segment())
        return self


@dataclass(frozen=True)
class Delimiters:
    """The interchange's delimiters, from its ISA."""

    element: str
    repetition: str
    component: str
    terminator: str


def _check_isa(text: str, file: str | None) -> Delimiters:
    def bad(why: str) -> FormatError:
        return FormatError(
            f"the file does not start with a valid ISA interchange header: {why}. Nothing of it is taken",
            rule="x12_isa_invalid",
            source=SourceRef(file, "ISA", 1),
        )

    if not text.startswith("ISA"):
        shown = text[:20].strip() or "nothing"
        raise bad(f"it starts with {shown!r}")
    if len(text) < ISA_LENGTH:
        raise bad(f"the file is only {len(text)} characters; the ISA alone is {ISA_LENGTH}")
    separator = text[3]
    if separator.isalnum() or separator in _BLANK:
        raise bad(f"{separator!r} cannot be the element separator")
    if text.count(separator, 0, ISA_LENGTH) != 16 or text[103] != separator:
        raise bad(f"the ISA is not {ISA_LENGTH} characters with 16 elements padded to their full width")
    component, terminator, repetition = text[104], text[105], text[82]
    if len({separator, component, terminator}) != 3 or component.isalnum() or terminator.isalnum():
        raise bad(f"its delimiters {separator!r}, {component!r}, {terminator!r} are not distinct punctuation")
    return Delimiters(separator, repetition, component, terminator)


def _segments(text: str, delimiters: Delimiters, file: str | None) -> Iterator[Segment]:
    """The file's segments, split by x12sdk's reader, with positions and offsets."""
    terminator = delimiters.terminator
    scan = text
    if terminator == "\n":
        # x12sdk's reader drops every line break before splitting segments, so a file whose
        # segments end in line breaks would read as one segment: hand it a same-length copy
        # with another terminator (offsets are unchanged).
        substitute = next((c for c in "\x1c\x1d\x1e\x1f\x07" if c not in text), None)
        if substitute is None:
            raise FormatError(
                "the file's segments end in line breaks and it uses every control character "
                "this reader could substitute: end segments with ~. Nothing of it is taken",
                rule="x12_isa_invalid",
                source=SourceRef(file, "ISA", 1),
            )
        scan = text.replace("\n", substitute)
        terminator = substitute
    skip = _BLANK | {terminator}
    find = scan.find
    size = len(scan)
    make = tuple.__new__
    cursor = 0
    position = 0
    with _InMemorySegmentReader(scan) as reader:
        for name, elements in reader.segments():
            raw = elements[0]
            if len(elements) == 1 and not name.strip():
                continue  # a blank line, or nothing after the last terminator
            if raw[:1] in _BLANK:
                raw = raw.lstrip()
            # Between the last segment's terminator and this segment's id there are only blanks
            # and empty segments, so the first match of its id from there is where it starts.
            start = find(raw, cursor) if raw else -1
            if start < 0:
                start = cursor
                while start < size and scan[start] in skip:
                    start += 1
            end = find(terminator, start)
            cursor = end = size if end < 0 else end + 1
            position += 1
            if name != raw:
                name = name.strip()
            elements[0] = name
            yield make(Segment, (position, name, elements, start, end))


# --- envelope ---------------------------------------------------------------------------------


@dataclass(frozen=True)
class EnvelopeSpec:
    """What a reader takes: ST01, GS01, and the accepted versions (GS08/ST03) with the kind each is."""

    transaction_code: str
    functional_code: str
    versions: Mapping[str, str]
    noun: str
    """What a set holds, for messages: ``"claim"``, ``"claim payment"``."""


@dataclass(frozen=True)
class SetHeader:
    """A transaction set as its ST opens it: what kind, which version, its control numbers."""

    file: str | None
    kind: str
    version: str
    control: Mapping[str, str]
    st: Segment
    text: str
    """The whole decoded file; ``text[st.start:se.end]`` is the set (see :meth:`set_bytes`)."""
    delimiters: Delimiters

    def source(self, segment: Segment) -> SourceRef:
        return SourceRef(self.file, segment.id, segment.position, dict(self.control))

    def set_bytes(self, se: Segment) -> bytes:
        """The exact bytes of the set, from the S of ST to SE's terminator (line breaks inside kept)."""
        return self.text[self.st.start : se.end].encode("utf-8")


T = TypeVar("T")
T_co = TypeVar("T_co", covariant=True)


class SetReader(Protocol[T_co]):
    """Reads one transaction set's content, a segment at a time (ST and SE are not passed)."""

    @property
    def count(self) -> int:
        """How many items (claims, payments) it has seen so far, for messages."""
        ...

    def segment(self, segment: Segment) -> None: ...

    def finish(self, se: Segment) -> T_co: ...


@dataclass
class Interchange(Generic[T]):
    """What :func:`read_interchange` gives back: each accepted set's result, in file order, and refusals."""

    kind: str
    results: list[T]
    rejected: list[FormatError] = field(default_factory=list)


@dataclass
class _Group(Generic[T]):
    gs: Segment
    control: str
    kind: str | None
    problem: tuple[str, str, Segment] | None = None
    """Why the group falls at its GE whatever its counts say: (message, rule, segment)."""
    sets: int = 0
    items: int = 0
    results: list[T] = field(default_factory=list)


@dataclass
class _OpenSet(Generic[T]):
    header: SetHeader
    reader: SetReader[T] | None
    problem: FormatError | None = None
    segments: int = 1


def read_interchange(
    data: bytes,
    *,
    file: str | None,
    spec: EnvelopeSpec,
    open_set: Callable[[SetHeader], SetReader[T]],
    max_bytes: int = MAX_X12_BYTES,
) -> Interchange[T]:
    """Check the envelope of ``data`` and hand each transaction set's segments to ``open_set(header)``.

    Raises :class:`FormatError` for what refuses the whole file (see the module docstring);
    sets and groups refused on their own are in ``rejected``. ``kind`` is the kind of the first
    functional group of an accepted version; a group of another kind is refused
    (``x12_version``): one file, one kind. A file none of whose groups is of an accepted
    version is refused whole.
    """
    text = decode_x12(data, file=file, max_bytes=max_bytes)
    delimiters = _check_isa(text, file)
    reading: _EnvelopeReader[T] = _EnvelopeReader(text, file, spec, delimiters, open_set)
    for segment in _segments(text, delimiters, file):
        reading.segment(segment)
    return reading.finish()


class _EnvelopeReader(Generic[T]):
    """The envelope's state while the segments go by: which interchange, group and set are open."""

    def __init__(
        self,
        text: str,
        file: str | None,
        spec: EnvelopeSpec,
        delimiters: Delimiters,
        open_set: Callable[[SetHeader], SetReader[T]],
    ) -> None:
        self.text = text
        self.file = file
        self.spec = spec
        self.delimiters = delimiters
        self.open_set = open_set
        self.isa13 = ""
        self.seen_isa = False
        self.group: _Group[T] | None = None
        self.current: _OpenSet[T] | None = None
        self.groups = 0
        self.kind: str | None = None
        self.version_error: FormatError | None = None
        self.results: list[T] = []
        self.rejected: list[FormatError] = []
        self.last: Segment | None = None
        self.ended: Segment | None = None

    # where and what ------------------------------------------------------------------------

    def control(self, st02: str | None = None) -> dict[str, str]:
        control = {"ISA13": self.isa13}
        if self.group is not None:
            control["GS06"] = self.group.control
        if st02 is not None:
            control["ST02"] = st02
        return control

    def fail(self, message: str, rule: str, segment: Segment, st02: str | None = None) -> FormatError:
        source = SourceRef(self.file, segment.id, segment.position, self.control(st02))
        return FormatError(message, rule=rule, source=source)

    def not_taken(self, count: int) -> str:
        noun = self.spec.noun
        if count == 1:
            return f"its 1 {noun} is not taken"
        return f"none of its {count} {noun}s is taken"

    # segments ------------------------------------------------------------------------------

    def segment(self, segment: Segment) -> None:
        self.last = segment
        name = segment.id
        current = self.current
        if current is not None:
            if name == "SE":
                self.close_set(current, segment)
                return
            if name not in _ENVELOPE:
                current.segments += 1
                if current.reader is not None:
                    current.reader.segment(segment)
                return
            header = current.header
            self.drop_set(
                current,
                f"transaction set {header.control['ST02']} (ST at position {header.st.position}) has no SE: "
                f"{name} at position {segment.position} comes first; {self.not_taken(self.count_of(current))}",
                "x12_truncated",
                segment,
            )
        if self.ended is not None:
            raise self.fail(
                f"segment {name} at position {segment.position} comes after the interchange's IEA "
                f"(position {self.ended.position}): one interchange per file. Nothing of the file is taken",
                "x12_structure",
                segment,
            )
        if name == "ST":
            self.on_st(segment)
        elif name == "GS":
            self.on_gs(segment)
        elif name == "GE":
            self.on_ge(segment)
        elif name == "IEA":
            self.on_iea(segment)
        elif name == "ISA":
            self.on_isa(segment)
        else:
            self.stray(segment)

    def stray(self, segment: Segment) -> None:
        group = self.group
        message = f"segment {segment.id} at position {segment.position} is outside any transaction set (ST ... SE)"
        if group is None:
            raise self.fail(
                f"{message} and any functional group. Nothing of the file is taken", "x12_structure", segment
            )
        if group.problem is None:
            group.problem = (f"{message} in functional group {group.control}", "x12_structure", segment)

    def on_isa(self, segment: Segment) -> None:
        if self.seen_isa:
            raise self.fail(
                f"a second ISA at position {segment.position} before the first interchange's IEA: "
                "the first interchange is cut short. Nothing of the file is taken",
                "x12_truncated",
                segment,
            )
        self.seen_isa = True
        self.isa13 = segment.element(13).strip()
        if not (len(self.isa13) == 9 and self.isa13.isdigit()):
            raise self.fail(
                f"ISA13 (interchange control number) {self.isa13!r} is not 9 digits. Nothing of the file is taken",
                "x12_isa_invalid",
                segment,
            )

    def on_gs(self, segment: Segment) -> None:
        group = self.group
        if group is not None:
            self.drop_group(
                group,
                f"functional group {group.control} (GS at position {group.gs.position}) has no GE: "
                f"GS at position {segment.position} comes first; {self.not_taken(group.items)}",
                "x12_truncated",
                segment,
            )
        self.groups += 1
        control = segment.element(6).strip()
        version = segment.element(8).strip()
        kind = self.spec.versions.get(version)
        group = self.group = _Group(segment, control, kind)
        where = f"functional group {control} (GS at position {segment.position})"
        if segment.element(1) != self.spec.functional_code:
            group.kind = None
            group.problem = (
                f"{where} is of type {segment.element(1)!r} (GS01); this reader takes "
                f"{self.spec.functional_code} groups ({self.spec.transaction_code})",
                "x12_version",
                segment,
            )
        elif kind is None:
            accepted = ", ".join(sorted(self.spec.versions))
            group.problem = (
                f"{where} is version {version!r} (GS08); this reader takes {accepted}",
                "x12_version",
                segment,
            )
        elif self.kind is None:
            self.kind = kind
        elif kind != self.kind:
            group.problem = (
                f"{where} holds {kind} {self.spec.noun}s and this file's first group {self.kind}: "
                "send each kind in a file of its own",
                "x12_version",
                segment,
            )
        if group.problem is not None and self.version_error is None and group.problem[1] == "x12_version":
            self.version_error = self.fail(group.problem[0], "x12_version", segment)

    def on_st(self, segment: Segment) -> None:
        group = self.group
        st02 = segment.element(2).strip()
        where = f"transaction set {st02} (ST at position {segment.position})"
        if group is None:
            raise self.fail(
                f"{where} is outside any functional group (GS ... GE). Nothing of the file is taken",
                "x12_structure",
                segment,
                st02,
            )
        group.sets += 1
        code = segment.element(1).strip()
        version = segment.element(3).strip() or group.gs.element(8).strip()
        header = SetHeader(
            self.file, group.kind or "", version, self.control(st02), segment, self.text, self.delimiters
        )
        current: _OpenSet[T] = _OpenSet(header, None)
        self.current = current
        if code != self.spec.transaction_code:
            current.problem = self.fail(
                f"{where} is a {code!r} (ST01); this reader takes {self.spec.transaction_code}",
                "x12_version",
                segment,
                st02,
            )
        elif group.kind is not None and self.spec.versions.get(version) != group.kind:
            current.problem = self.fail(
                f"{where} is version {version!r} (ST03), not of its group's {group.gs.element(8)!r} (GS08)",
                "x12_version",
                segment,
                st02,
            )
        elif group.problem is None:
            current.reader = self.open_set(header)

    @staticmethod
    def count_of(current: _OpenSet[T]) -> int:
        return current.reader.count if current.reader is not None else 0

    def close_set(self, current: _OpenSet[T], se: Segment) -> None:
        group = self.group
        assert group is not None  # a set is only opened inside a group
        current.segments += 1
        self.current = None
        header = current.header
        st02 = header.control["ST02"]
        count = self.count_of(current)
        group.items += count
        se01, se02 = se.element(1).strip(), se.element(2).strip()
        where = f"transaction set {st02} (ST at position {header.st.position})"
        if se01 != str(current.segments):
            said = f"says it has {se01} segments" if se01.isdigit() else f"gives {se01!r} as its segment count"
            self.rejected.append(
                self.fail(
                    f"{where} {said} (SE01 at position {se.position}), but it has {current.segments} from ST to SE: "
                    f"it was cut or edited on the way; {self.not_taken(count)}",
                    "x12_se_count",
                    se,
                    st02,
                )
            )
        elif se02 != st02:
            self.rejected.append(
                self.fail(
                    f"{where} ends with SE02 {se02!r} (position {se.position}), not its ST02 {st02!r}; "
                    f"{self.not_taken(count)}",
                    "x12_control_mismatch",
                    se,
                    st02,
                )
            )
        elif current.problem is not None:
            self.rejected.append(current.problem)
        elif current.reader is not None:
            group.results.append(current.reader.finish(se))

    def drop_set(self, current: _OpenSet[T], message: str, rule: str, segment: Segment) -> None:
        assert self.group is not None
        self.group.items += self.count_of(current)
        self.current = None
        self.rejected.append(self.fail(message, rule, segment, current.header.control["ST02"]))

    def drop_group(self, group: _Group[T], message: str, rule: str, segment: Segment) -> None:
        self.rejected.append(self.fail(message, rule, segment))
        self.group = None

    def on_ge(self, segment: Segment) -> None:
        group = self.group
        if group is None:
            raise self.fail(
                f"GE at position {segment.position} closes no functional group. Nothing of the file is taken",
                "x12_structure",
                segment,
            )
        ge01, ge02 = segment.element(1).strip(), segment.element(2).strip()
        where = f"functional group {group.control} (GS at position {group.gs.position})"
        if ge01 != str(group.sets):
            said = f"says it holds {ge01} transaction sets" if ge01.isdigit() else f"gives {ge01!r} as its set count"
            self.drop_group(
                group,
                f"{where} {said} (GE01 at position {segment.position}), but it holds {group.sets}: "
                f"a set may be missing; {self.not_taken(group.items)}",
                "x12_ge_count",
                segment,
            )
        elif ge02 != group.control:
            self.drop_group(
                group,
                f"{where} ends with GE02 {ge02!r} (position {segment.position}), not its GS06 {group.control!r}; "
                f"{self.not_taken(group.items)}",
                "x12_control_mismatch",
                segment,
            )
        elif group.problem is not None:
            message, rule, at = group.problem
            taken = f"; {self.not_taken(group.items)}" if group.items else ""
            self.drop_group(group, message + taken, rule, at)
        else:
            self.results.extend(group.results)
            self.group = None

    def on_iea(self, segment: Segment) -> None:
        group = self.group
        if group is not None:
            self.drop_group(
                group,
                f"functional group {group.control} (GS at position {group.gs.position}) has no GE: "
                f"the IEA at position {segment.position} comes first; {self.not_taken(group.items)}",
                "x12_truncated",
                segment,
            )
        iea01, iea02 = segment.element(1).strip(), segment.element(2).strip()
        if iea01 != str(self.groups):
            said = f"says it holds {iea01} functional groups" if iea01.isdigit() else f"gives {iea01!r} as its count"
            raise self.fail(
                f"the interchange {self.isa13} {said} (IEA01 at position {segment.position}), but it holds "
                f"{self.groups}: a group may be missing. Nothing of the file is taken",
                "x12_iea_count",
                segment,
            )
        if iea02 != self.isa13:
            raise self.fail(
                f"the interchange ends with IEA02 {iea02!r} (position {segment.position}), not its ISA13 "
                f"{self.isa13!r}. Nothing of the file is taken",
                "x12_control_mismatch",
                segment,
            )
        self.ended = segment

    def finish(self) -> Interchange[T]:
        last = self.last
        assert last is not None  # the ISA was checked: there is one segment at least
        if self.ended is None:
            still_open = []
            if self.current is not None:
                still_open.append(f"transaction set {self.current.header.control['ST02']} has no SE")
            if self.group is not None:
                still_open.append(f"functional group {self.group.control} no GE")
            still_open.append("the interchange no IEA")
            raise self.fail(
                f"the file ends after segment {last.id} at position {last.position}: it is cut short "
                f"({', '.join(still_open)}). Nothing of it is taken",
                "x12_truncated",
                last,
            )
        if self.groups == 0:
            raise self.fail(
                "the interchange holds no functional group (GS ... GE): there is nothing to read",
                "x12_structure",
                last,
            )
        if self.kind is None:
            error = self.version_error
            assert error is not None  # every group was refused for its type or version
            raise FormatError(f"{error.message}. Nothing of the file is taken", rule="x12_version", source=error.source)
        return Interchange(self.kind, self.results, self.rejected)


_ENVELOPE = frozenset({"ST", "SE", "GS", "GE", "ISA", "IEA"})


# --- values -----------------------------------------------------------------------------------


def field_ref(anchor: str, segment: Segment | None = None, element: int | None = None, component: int = 0) -> str:
    """A problem's ``field``: ``CLM[12].SV1[15]-01-2`` (see the module docstring).

    ``anchor`` is the item's own segment (``"CLM[12]"``); ``segment`` another segment of it (or
    ``None`` for the anchor itself).
    """
    where = anchor if segment is None else f"{anchor}.{segment.id}[{segment.position}]"
    if element is not None:
        where += f"-{element:02d}"
        if component:
            where += f"-{component}"
    return where


Where = str | Callable[[], str]
"""A problem's ``field``, or a function giving it: paths are only formatted for a problem."""


def _where(field: Where) -> str:
    return field if isinstance(field, str) else field()


def parse_cents(text: str, *, negative: bool = False) -> int | None:
    """The fast path of :func:`money_cents`: the cents, or ``None`` when it is not an amount (no problem made)."""
    if not _NUMBER.fullmatch(text):
        return None
    point = text.find(".")
    if point >= 0 and len(text) - point - 1 > 2:
        return None
    cents = int(Decimal(text).scaleb(2))
    return None if cents < 0 and not negative else cents


def money_cents(
    text: str, field: Where, what: str, problems: list[FieldProblem], *, negative: bool = False
) -> int | None:
    """``"125.00"`` -> ``12500`` exactly (Decimal); ``None`` with a problem for anything that is not an amount.

    Rules: ``money_format`` (not a decimal number, e.g. ``12,50`` or ``1E3``), ``money_precision``
    (more than 2 decimals), ``money_negative`` (below zero, unless ``negative``).
    """
    if not _NUMBER.fullmatch(text):
        message = f"{what} {text!r} is not an amount: write it as e.g. 125.00"
        problems.append(FieldProblem(_where(field), text, "money_format", message))
        return None
    point = text.find(".")
    if point >= 0 and len(text) - point - 1 > 2:
        message = f"{what} {text} has more than 2 decimals: amounts are dollars and cents"
        problems.append(FieldProblem(_where(field), text, "money_precision", message))
        return None
    cents = int(Decimal(text).scaleb(2))
    if cents < 0 and not negative:
        problems.append(FieldProblem(_where(field), text, "money_negative", f"{what} {text} is negative"))
        return None
    return cents


def whole_number(text: str, field: Where, what: str, problems: list[FieldProblem], *, rule: str) -> int | None:
    """``"2"`` or ``"2.0"`` -> 2; ``None`` with a problem under ``rule`` for a fraction or what is not a number."""
    if text.isdigit():
        return int(text)
    if _NUMBER.fullmatch(text):
        value = Decimal(text)
        if value == value.to_integral_value():
            return int(value)
        problems.append(FieldProblem(_where(field), text, rule, f"{what} {text} is not a whole number"))
        return None
    problems.append(FieldProblem(_where(field), text, rule, f"{what} {text!r} is not a number"))
    return None


def parse_d8(text: str) -> date | None:
    """``"20250602"`` -> ``date(2025, 6, 2)``; ``None`` if it is not a real CCYYMMDD date."""
    if len(text) != 8 or not text.isdigit():
        return None
    try:
        return date(int(text[:4]), int(text[4:6]), int(text[6:]))
    except ValueError:
        return None


def parse_date_value(
    qualifier: str, text: str, field: Where, what: str, problems: list[FieldProblem]
) -> tuple[date, date] | None:
    """A DTP/DTM date by its format qualifier: D8 ``CCYYMMDD`` (from = to) or RD8 ``CCYYMMDD-CCYYMMDD``.

    The order of an RD8's dates is the claim's business (``ledger.validation``); only form is checked here.
    """
    if qualifier == "D8":
        day = parse_d8(text)
        if day is None:
            message = f"{what} {text!r} is not a real date written CCYYMMDD"
            problems.append(FieldProblem(_where(field), text, "date_invalid", message))
            return None
        return day, day
    if qualifier == "RD8":
        first, dash, second = text.partition("-")
        start, end = parse_d8(first), parse_d8(second)
        if not dash or start is None or end is None:
            message = f"{what} {text!r} is not a real date range written CCYYMMDD-CCYYMMDD"
            problems.append(FieldProblem(_where(field), text, "date_invalid", message))
            return None
        return start, end
    message = f"{what}: date format {qualifier!r} is not D8 (a date) or RD8 (a range)"
    problems.append(FieldProblem(_where(field), qualifier, "unknown_qualifier", message))
    return None
