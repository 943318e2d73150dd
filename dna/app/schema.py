"""
The schema kit of the configuration file: parsers of TOML values and a
reader of TOML tables that put the location of a mistake in front of it.

Every parser takes a value as C{tomllib} gives it and returns it checked (and
perhaps normalised), or raises L{Invalid} saying what is wrong with it; the
callers put where in front (L{located}, L{Table.value}), so that
L{dna.app.config} ends up with one line such as::

    [server] idle-timeout: expected a positive number of seconds, got string '60'
"""

import datetime
import difflib
import math
import os
from contextlib import contextmanager

from dna.core.names import normalizeDomain, normalizeServerName
from dna.error import InvalidAddress


class Invalid(ValueError):
    """
    A value is wrong.  The message says why; callers put where in front.
    """


#: The default of L{Table.value} that makes a key required.
REQUIRED = object()


# Values


_TOML_TYPES = (
    (bool, "boolean"),
    (int, "integer"),
    (float, "float"),
    (str, "string"),
    ((list, tuple), "array"),
    (dict, "table"),
    (datetime.datetime, "date-time"),
    (datetime.date, "date"),
    (datetime.time, "time"),
)


def describe(value):
    """
    Name a TOML value for a message: its type and, when short, itself.
    """
    for kind, name in _TOML_TYPES:
        if isinstance(value, kind):
            break
    else:
        name = type(value).__name__
    if isinstance(value, bool):
        return f"{name} {str(value).lower()}"
    if isinstance(value, (int, float, str)):
        return f"{name} {value!r}"
    return name


def orList(words):
    """
    C{"a, b or c"}.
    """
    words = list(words)
    if len(words) == 1:
        return words[0]
    return ", ".join(words[:-1]) + " or " + words[-1]


def string(value):
    if not isinstance(value, str):
        raise Invalid(f"expected a string, got {describe(value)}")
    return value


def boolean(value):
    if not isinstance(value, bool):
        raise Invalid(f"expected true or false, got {describe(value)}")
    return value


def seconds(value):
    """
    A positive, finite number of seconds, as a L{float}.
    """
    if (isinstance(value, bool) or not isinstance(value, (int, float))
            or not math.isfinite(value) or value <= 0):
        raise Invalid(
            f"expected a positive number of seconds, got {describe(value)}")
    return float(value)


def count(value):
    """
    A positive integer.
    """
    if isinstance(value, bool) or not isinstance(value, int) or value <= 0:
        raise Invalid(f"expected a positive integer, got {describe(value)}")
    return value


def word(words):
    """
    A parser accepting one of C{words}.
    """

    def parse(value):
        if not isinstance(value, str):
            raise Invalid(f"expected {orList(words)}, got {describe(value)}")
        if value not in words:
            raise Invalid(
                f"unknown word {value!r} (expected {orList(words)})")
        return value

    return parse


def domain(value):
    """
    A domain, such as a hosted domain, in the form
    L{dna.core.names.normalizeDomain} gives.  A name IDNA2008 refuses is
    refused, never mapped to another (C{'faß.example'} is not
    C{'fass.example'}).
    """
    string(value)
    try:
        return normalizeDomain(value)
    except InvalidAddress:
        raise Invalid(f"{value!r} is not a valid domain") from None


def serverName(value):
    """
    A server name, in the form L{dna.core.names.normalizeServerName} gives.
    """
    string(value)
    try:
        return normalizeServerName(value)
    except InvalidAddress:
        raise Invalid(f"{value!r} is not a server name") from None


def array(parseItem, empty, what):
    """
    A parser of arrays whose items C{parseItem} parses, refusing an item that
    comes twice (after parsing: C{"Sender.TLD"} is C{"sender.tld"}).

    @param empty: The complaint about an empty array, or L{None} to accept
        one.
    @param what: What the items are, for messages.
    """

    def parse(value):
        if not isinstance(value, (list, tuple)):
            raise Invalid(f"expected an array of {what}, got {describe(value)}")
        if not value and empty:
            raise Invalid(empty)
        items = {}
        for item in value:
            parsed = parseItem(item)
            if parsed in items:
                raise Invalid(
                    f"{item!r} is listed twice (as {items[parsed]!r} before)")
            items[parsed] = item
        return tuple(items)

    return parse


def suggest(key, keys, elsewhere=()):
    """
    Say what an unknown key may have meant, in parentheses after a space.

    @param keys: The valid keys here.
    @param elsewhere: C{(section, key)} of valid keys of other sections.
    """
    for section, other in elsewhere:
        if other == key:
            return f" (it belongs in {section})"
    close = difflib.get_close_matches(key, list(keys), n=1)
    if close:
        return f" (did you mean {close[0]!r}?)"
    return f" (expected {orList([repr(k) for k in keys])})"


# Tables


class Table:
    """
    One TOML table being read: refuses unknown keys and puts the location in
    front of every problem with a value.
    """

    def __init__(self, where, table, keys, elsewhere=()):
        """
        @param where: The location for messages, such as C{"[server]"}.
        @param table: The parsed table, or L{None} when it is missing.
        @param keys: The keys it may have.
        @param elsewhere: C{(section, key)} of other sections, for hints.
        @raise Invalid: If the table is not a table or has an unknown key.
        """
        if table is None:
            table = {}
        if not isinstance(table, dict):
            raise Invalid(f"{where}: expected a table, got {describe(table)}")
        for key in table:
            if key not in keys:
                hint = suggest(key, keys, [
                    (section, other) for section, other in elsewhere
                    if section != where])
                raise Invalid(f"{where} {key}: unknown key{hint}")
        self.where = where
        self._table = table

    def __contains__(self, key):
        return key in self._table

    def value(self, key, parse, default=REQUIRED):
        """
        The value of C{key}, parsed.

        @param default: The value when C{key} is missing; without it the key
            is required.
        """
        if key not in self._table:
            if default is REQUIRED:
                raise Invalid(f"{self.where} {key}: required, but missing")
            return default
        with located(f"{self.where} {key}"):
            return parse(self._table[key])


@contextmanager
def located(location):
    """
    Put C{location} in front of the complaint of an L{Invalid} raised inside.
    """
    try:
        yield
    except Invalid as e:
        raise Invalid(f"{location}: {e}") from None


# Files


def readFile(path):
    """
    The contents of a file.

    @raise Invalid: If it cannot be read.
    """
    try:
        with open(path, "rb") as f:
            return f.read()
    except FileNotFoundError:
        raise Invalid(f"no such file {path}") from None
    except OSError as e:
        raise Invalid(f"cannot read {path}: {e.strerror}") from None


def readableFile(base):
    """
    A parser of file names, relative ones against C{base}; the file must be
    readable, and the parser returns C{(path, contents)}.
    """

    def parse(value):
        string(value)
        if not value:
            raise Invalid("expected a file name, got an empty string")
        path = os.path.normpath(os.path.join(base, value))
        return path, readFile(path)

    return parse
