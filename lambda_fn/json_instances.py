"""Stream the instances out of one JSON document, one instance at a time.

A ``.json`` input is a single document, ``{"instances": [...]}`` or a bare
``[...]``; parsing it whole would need the whole object in memory. This scanner
walks the document's structure itself and hands each instance to the standard
library's (C) decoder, so memory stays at about one read chunk plus one
instance, whatever the file size. Each instance is passed on as its original
text, so numbers reach the model exactly as written.
"""

from __future__ import annotations

import codecs
import json
from collections.abc import Iterable, Iterator

from errors import PermanentError

_WHITESPACE = " \t\n\r"
_decoder = json.JSONDecoder()


class InstanceTooLarge(Exception):
    """Instance ``record`` exceeds the byte limit."""

    def __init__(self, record: int) -> None:
        super().__init__(record)
        self.record = record


class _Scanner:
    def __init__(self, chunks: Iterable[bytes], max_value_chars: int) -> None:
        self._chunks = iter(chunks)
        self._utf8 = codecs.getincrementaldecoder("utf-8")()
        self._buffer = ""
        self._pos = 0
        self._consumed = 0  # characters dropped from the front of the buffer
        self._eof = False
        self._max_value_chars = max_value_chars

    def _fill(self) -> bool:
        """Read one more chunk; False at the end of the stream."""
        if self._eof:
            return False
        self._consumed += self._pos
        self._buffer = self._buffer[self._pos :]
        self._pos = 0
        try:
            chunk = next(self._chunks)
            self._buffer += self._utf8.decode(chunk)
        except StopIteration:
            self._buffer += self._utf8.decode(b"", final=True)
            self._eof = True
        except UnicodeDecodeError as exc:
            raise PermanentError(f"the JSON document is not valid UTF-8: {exc}") from exc
        return True

    def fail(self, expected: str, record: int | None = None) -> PermanentError:
        found = self._buffer[self._pos : self._pos + 20] if self._pos < len(self._buffer) else ""
        return PermanentError(
            f"malformed JSON document at character {self._consumed + self._pos + 1}: "
            f"expected {expected}, found {found or 'end of file'!r}",
            record=record,
        )

    def peek(self) -> str:
        """The next non-whitespace character, or '' at the end of the document."""
        while True:
            while self._pos < len(self._buffer) and self._buffer[self._pos] in _WHITESPACE:
                self._pos += 1
            if self._pos < len(self._buffer):
                return self._buffer[self._pos]
            if not self._fill():
                return ""

    def take(self, char: str) -> None:
        if self.peek() != char:
            raise self.fail(repr(char))
        self._pos += 1

    def value(self, record: int | None = None) -> tuple[object, str]:
        """Decode the JSON value at the cursor: ``(value, its original text)``."""
        self.peek()
        while True:
            try:
                value, end = _decoder.raw_decode(self._buffer, self._pos)
            except json.JSONDecodeError as exc:
                if not self._may_be_cut(exc) or self._too_long(record) or not self._fill():
                    raise PermanentError(
                        f"malformed JSON document at character {self._consumed + exc.pos + 1}: "
                        f"{exc.msg}",
                        record=record,
                    ) from exc
                continue
            # A number that ends the buffer may continue in the next chunk.
            if end == len(self._buffer) and not self._eof:
                self._too_long(record)
                self._fill()
                continue
            text = self._buffer[self._pos : end]
            self._pos = end
            return value, text

    def _may_be_cut(self, exc: json.JSONDecodeError) -> bool:
        """Could this error vanish with more input, because the value runs past the buffer?"""
        # An incomplete token (number, literal, escape) fails within a few characters
        # of the end; only an unterminated string reports its start instead.
        return exc.pos >= len(self._buffer) - 10 or exc.msg.startswith("Unterminated string")

    def _too_long(self, record: int | None) -> bool:
        if len(self._buffer) - self._pos > self._max_value_chars:
            if record is None:
                raise PermanentError(
                    f"a value outside the instances array at character "
                    f"{self._consumed + self._pos + 1} exceeds {self._max_value_chars} characters"
                )
            raise InstanceTooLarge(record)
        return False


def json_instances(chunks: Iterable[bytes], max_instance_bytes: int) -> Iterator[bytes]:
    """Yield each instance of a ``{"instances": [...]}`` or ``[...]`` document as UTF-8 text.

    Raises ``PermanentError`` for a malformed document (naming the character
    offset and, inside the array, the record number) and ``InstanceTooLarge``
    for an instance that cannot fit in one request.
    """
    scanner = _Scanner(chunks, max_instance_bytes)
    first = scanner.peek()
    if first == "[":
        yield from _array(scanner)
    elif first == "{":
        scanner.take("{")
        found = False
        while scanner.peek() != "}":
            key, _ = scanner.value()
            if not isinstance(key, str):
                raise scanner.fail("an object key (a string)")
            scanner.take(":")
            if key == "instances" and scanner.peek() == "[":
                found = True
                yield from _array(scanner)
            else:
                scanner.value()
            if scanner.peek() != ",":
                break
            scanner.take(",")
        scanner.take("}")
        if not found:
            raise PermanentError('the JSON document has no "instances" array')
    else:
        raise scanner.fail('a JSON document {"instances": [...]} or a list of instances')
    if scanner.peek() != "":
        raise scanner.fail("the end of the document after its closing bracket")


def _array(scanner: _Scanner) -> Iterator[bytes]:
    scanner.take("[")
    record = 0
    if scanner.peek() == "]":
        scanner.take("]")
        return
    while True:
        record += 1
        if scanner.peek() not in ("[", "{"):
            raise scanner.fail(
                "an instance: a list of feature values or an object keyed by feature name",
                record=record,
            )
        _, text = scanner.value(record)
        yield text.encode()
        following = scanner.peek()
        if following == "]":
            scanner.take("]")
            return
        if following != ",":
            raise scanner.fail("',' or ']' after an instance", record=record)
        scanner.take(",")
