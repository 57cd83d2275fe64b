"""Distinguished names compared as RFC 4517 ``distinguishedNameMatch`` says.

Two DNs match when they have the same number of RDNs, in the same order, and each RDN
holds the same set of (attribute type, value) pairs; attribute types are compared as OIDs
(so ``cn``, ``CN`` and ``2.5.4.3`` are one type) and string values after RFC 4518
preparation for ``caseIgnoreMatch``: case, compatibility forms and insignificant spaces do
not matter. The registered value is an RFC 4514 string (most specific RDN first, as
``openssl x509 -nameopt RFC2253`` prints it); escapes and ``#hex`` BER values are understood.
"""

from __future__ import annotations

import unicodedata
from dataclasses import dataclass

from cryptography import x509
from cryptography.x509.oid import NameOID, ObjectIdentifier

__all__ = ["DistinguishedName", "InvalidDistinguishedName"]


class InvalidDistinguishedName(ValueError):
    """The string is not an RFC 4514 distinguished name."""


# RFC 4514 §3 names plus the ones certificates commonly carry. Keys are upper case:
# attribute type names are case-insensitive.
_ATTRIBUTE_TYPES: dict[str, ObjectIdentifier] = {
    "CN": NameOID.COMMON_NAME,
    "C": NameOID.COUNTRY_NAME,
    "L": NameOID.LOCALITY_NAME,
    "ST": NameOID.STATE_OR_PROVINCE_NAME,
    "S": NameOID.STATE_OR_PROVINCE_NAME,
    "STREET": NameOID.STREET_ADDRESS,
    "O": NameOID.ORGANIZATION_NAME,
    "OU": NameOID.ORGANIZATIONAL_UNIT_NAME,
    "DC": NameOID.DOMAIN_COMPONENT,
    "UID": NameOID.USER_ID,
    "SERIALNUMBER": NameOID.SERIAL_NUMBER,
    "EMAILADDRESS": NameOID.EMAIL_ADDRESS,
    "E": NameOID.EMAIL_ADDRESS,
    "TITLE": NameOID.TITLE,
    "SN": NameOID.SURNAME,
    "SURNAME": NameOID.SURNAME,
    "GN": NameOID.GIVEN_NAME,
    "GIVENNAME": NameOID.GIVEN_NAME,
    "INITIALS": NameOID.INITIALS,
    "GENERATIONQUALIFIER": NameOID.GENERATION_QUALIFIER,
    "DNQUALIFIER": NameOID.DN_QUALIFIER,
    "PSEUDONYM": NameOID.PSEUDONYM,
    "ORGANIZATIONIDENTIFIER": NameOID.ORGANIZATION_IDENTIFIER,
    "BUSINESSCATEGORY": NameOID.BUSINESS_CATEGORY,
    "POSTALCODE": NameOID.POSTAL_CODE,
    "JURISDICTIONC": NameOID.JURISDICTION_COUNTRY_NAME,
    "JURISDICTIONST": NameOID.JURISDICTION_STATE_OR_PROVINCE_NAME,
    "JURISDICTIONL": NameOID.JURISDICTION_LOCALITY_NAME,
}

# A prepared attribute value: a string after RFC 4518 preparation, or raw bytes for
# values that are not character strings.
PreparedValue = str | bytes
RDN = frozenset[tuple[str, PreparedValue]]

_MAPPED_TO_NOTHING = {0x00AD, 0x1806, 0x034F, 0x180B, 0x180C, 0x180D, 0xFFFC, 0x200B}
_MAPPED_TO_NOTHING.update(range(0xFE00, 0xFE10))
_MAPPED_TO_NOTHING.update(c for c in range(0x00, 0x20) if c not in (0x09, 0x0A, 0x0B, 0x0C, 0x0D))
_MAPPED_TO_NOTHING.update(range(0x7F, 0x85))
_MAPPED_TO_NOTHING.update(range(0x86, 0xA0))
_MAP_TABLE = {c: None for c in _MAPPED_TO_NOTHING}


def prepare(value: str) -> str:
    """RFC 4518 string preparation for caseIgnoreMatch (map, NFKC, case fold, NFKC, spaces)."""
    mapped = value.translate(_MAP_TABLE)
    mapped = "".join(" " if (ch.isspace() or unicodedata.category(ch) == "Zs") else ch for ch in mapped)
    # NFKC before case folding as well as after: a compatibility character may decompose to
    # one that folds (U+210C, black-letter H, is "H"), so folding first would leave it unequal to "h".
    folded = unicodedata.normalize("NFKC", unicodedata.normalize("NFKC", mapped).casefold())
    # Insignificant space handling: leading/trailing spaces removed, inner runs collapsed.
    return " ".join(folded.split())


def _prepare_attribute(attribute: x509.NameAttribute[str | bytes]) -> tuple[str, PreparedValue]:
    value = attribute.value
    return attribute.oid.dotted_string, prepare(value) if isinstance(value, str) else bytes(value)


@dataclass(frozen=True, slots=True)
class DistinguishedName:
    """A DN in certificate order (most significant RDN first), ready for comparison."""

    rdns: tuple[RDN, ...]

    @classmethod
    def from_name(cls, name: x509.Name) -> DistinguishedName:
        return cls(tuple(frozenset(_prepare_attribute(a) for a in rdn) for rdn in name.rdns))

    @classmethod
    def parse(cls, text: str) -> DistinguishedName:
        """Parse an RFC 4514 string. Raises ``InvalidDistinguishedName`` with the position."""
        rdns = _Parser(text).parse()
        # RFC 4514 strings list the most specific RDN first: the reverse of certificate order.
        return cls(tuple(reversed(rdns)))

    def matches(self, other: DistinguishedName) -> bool:
        return self.rdns == other.rdns


_SPECIAL = set('"+,;<>\\#= ')
_HEX = set("0123456789abcdefABCDEF")
_DIGITS = set("0123456789")  # not str.isdigit(): that is true of "²" and "٣" too
_STRING_TAGS = {0x0C: "utf-8", 0x13: "ascii", 0x16: "ascii", 0x14: "latin-1", 0x1E: "utf-16-be", 0x1C: "utf-32-be"}


def _decode_ber_string(data: bytes) -> PreparedValue:
    """Decode the BER of a ``#hex`` value: a character string becomes prepared text,
    anything else is compared as its raw content."""
    if len(data) >= 2 and data[1] < 0x80 and len(data) == 2 + data[1]:
        tag, content = data[0], data[2:]
        encoding = _STRING_TAGS.get(tag)
        if encoding is not None:
            try:
                return prepare(content.decode(encoding))
            except UnicodeDecodeError as exc:
                raise InvalidDistinguishedName(f"#hex value is not valid {encoding}: {exc}") from exc
        return content
    raise InvalidDistinguishedName("#hex value is not a short-form BER encoding")


class _Parser:
    def __init__(self, text: str) -> None:
        self.text = text
        self.pos = 0

    def error(self, message: str) -> InvalidDistinguishedName:
        return InvalidDistinguishedName(f"{message} at position {self.pos} of {self.text!r}")

    def skip_spaces(self) -> None:
        while self.pos < len(self.text) and self.text[self.pos] == " ":
            self.pos += 1

    def parse(self) -> list[RDN]:
        if not self.text.strip():
            raise InvalidDistinguishedName("the distinguished name is empty")
        try:
            self.text.encode("utf-8")
        except UnicodeEncodeError as exc:  # a lone surrogate, as JSON's "\ud800" decodes to
            self.pos = exc.start
            raise self.error("not a Unicode string (lone surrogate)") from None
        rdns: list[RDN] = []
        while True:
            rdns.append(self.rdn())
            if self.pos >= len(self.text):
                return rdns
            if self.text[self.pos] not in ",;":
                raise self.error("expected ',' between RDNs")
            self.pos += 1

    def rdn(self) -> RDN:
        pairs = [self.attribute_type_and_value()]
        while self.pos < len(self.text) and self.text[self.pos] == "+":
            self.pos += 1
            pairs.append(self.attribute_type_and_value())
        types = [t for t, _ in pairs]
        if len(set(types)) != len(types):
            raise self.error("an RDN repeats an attribute type")
        return frozenset(pairs)

    def attribute_type_and_value(self) -> tuple[str, PreparedValue]:
        self.skip_spaces()
        start = self.pos
        while self.pos < len(self.text) and self.text[self.pos] not in "=,+;":
            self.pos += 1
        name = self.text[start:self.pos].strip()
        if self.pos >= len(self.text) or self.text[self.pos] != "=":
            raise self.error(f"expected '=' after attribute type {name!r}")
        self.pos += 1
        oid = self.attribute_type(name)
        self.skip_spaces()
        if self.pos < len(self.text) and self.text[self.pos] == "#":
            return oid, self.hex_value()
        return oid, prepare(self.string_value())

    def attribute_type(self, name: str) -> str:
        if not name:
            raise self.error("missing attribute type")
        dotted = name[4:] if name.upper().startswith("OID.") else name
        if dotted[:1] in _DIGITS:
            parts = dotted.split(".")
            if len(parts) < 2 or not all(p and set(p) <= _DIGITS and (p == "0" or p[0] != "0") for p in parts):
                raise self.error(f"{name!r} is not a numeric OID")
            try:
                ObjectIdentifier(dotted)  # first arc 0-2, second below 40 under 0 and 1, arcs in range
            except ValueError:
                raise self.error(f"{name!r} is not a valid OID") from None
            return dotted
        oid = _ATTRIBUTE_TYPES.get(name.upper())
        if oid is None:
            raise self.error(f"unknown attribute type {name!r} (use its numeric OID)")
        return oid.dotted_string

    def hex_value(self) -> PreparedValue:
        self.pos += 1
        start = self.pos
        while self.pos < len(self.text) and self.text[self.pos] in _HEX:
            self.pos += 1
        digits = self.text[start:self.pos]
        self.skip_spaces()
        if not digits or len(digits) % 2 or (self.pos < len(self.text) and self.text[self.pos] not in ",;+"):
            raise self.error("malformed #hex value")
        return _decode_ber_string(bytes.fromhex(digits))

    def string_value(self) -> str:
        out = bytearray()
        while self.pos < len(self.text):
            ch = self.text[self.pos]
            if ch in ",;+":
                break
            if ch == "\\":
                self.pos += 1
                if self.pos >= len(self.text):
                    raise self.error("dangling '\\' escape")
                nxt = self.text[self.pos]
                if nxt in _SPECIAL:
                    out += nxt.encode()
                    self.pos += 1
                elif nxt in _HEX and self.pos + 1 < len(self.text) and self.text[self.pos + 1] in _HEX:
                    out.append(int(self.text[self.pos:self.pos + 2], 16))
                    self.pos += 2
                else:
                    raise self.error(f"invalid escape '\\{nxt}'")
                continue
            if ch in '"<>':
                raise self.error(f"character {ch!r} must be escaped")
            out += ch.encode()
            self.pos += 1
        try:
            value = out.decode("utf-8")
        except UnicodeDecodeError as exc:
            raise self.error("escaped bytes are not valid UTF-8") from exc
        if not value.strip():
            raise self.error("empty attribute value")
        return value


# --- DNs written the way OpenSSL prints them --------------------------------------------------
#
# ``openssl x509 -noout -subject`` prints a subject most general RDN first: OpenSSL 3's default
# (``-nameopt oneline``) as ``C = US, O = Example, CN = svc``, OpenSSL 1.0 and many tools as
# ``/C=US/O=Example/CN=svc``. RFC 4514 strings list the most specific RDN first
# (``CN=svc,O=Example,C=US``). The one-line form even parses as RFC 4514 (spaces around '='
# are tolerated), as a DN in the reverse order, which no certificate of the client carries:
# registering it fails silently, at every token request. So registration recognises both forms
# and answers with the RFC 4514 string of the same DN.

# How general an attribute type is, for telling the order of a DN: a country or a domain
# component comes first in certificate order, a common name or user id last.
_GENERALITY = {"C": 0, "DC": 0, "ST": 1, "S": 1, "L": 2, "STREET": 2, "O": 3, "OU": 4,
               "CN": 5, "UID": 5, "EMAILADDRESS": 5, "E": 5, "SERIALNUMBER": 5, "SN": 5, "GN": 5}
_OUTPUT_PREFIXES = ("subject=", "issuer=")


def _split_unescaped(text: str, separator: str) -> list[str]:
    """Split at ``separator`` where not escaped by a backslash nor inside double quotes."""
    parts, current, quoted, index = [], [], False, 0
    while index < len(text):
        char = text[index]
        if char == "\\" and index + 1 < len(text):
            current.append(text[index:index + 2])
            index += 2
            continue
        if char == '"':
            quoted = not quoted
        if char == separator and not quoted:
            parts.append("".join(current))
            current = []
        else:
            current.append(char)
        index += 1
    parts.append("".join(current))
    return parts


def _rfc4514_value(value: str, *, escaped: bool) -> str:
    """A value for an RFC 4514 string. ``escaped``: backslash escapes are RFC 4514's already
    (OpenSSL's one-line form); otherwise (the slash form) only ``\\/`` is an escape."""
    value = value.strip()
    if len(value) >= 2 and value[0] == value[-1] == '"':
        value, escaped = value[1:-1], False
    if escaped:
        return value
    value = _slash_unescaped(value)
    out = "".join(f"\\{c}" if c in '\\,+"<>;=' else c for c in value)
    if out.startswith(("#", " ")):
        out = "\\" + out
    return out[:-1] + "\\ " if out.endswith(" ") else out


def _rejoined(pieces: list[str], separator: str, *, escaped: bool) -> list[str] | None:
    """Pieces split at an unescaped ``separator``, with those that are no ``type=value`` put
    back into the value before them: ``-nameopt utf8`` prints ``O=Example, Inc.`` unescaped.
    None when the first piece is no ``type=value``."""
    joined: list[str] = []
    for piece in pieces:
        kind, equals, _ = piece.partition("=")
        if equals and kind.strip() and " " not in kind.strip():
            joined.append(piece)
        elif joined:
            joined[-1] += ("\\" if escaped else "") + separator + piece
        else:
            return None
    return joined


def _slash_unescaped(value: str) -> str:
    """A value of the slash form as text: OpenSSL writes ``\\/`` and ``\\+`` there, and bytes
    above 0x7F as ``\\xC3\\xBC``."""
    out = bytearray()
    index = 0
    while index < len(value):
        if value[index] == "\\" and index + 1 < len(value):
            hex_digits = value[index + 2:index + 4]
            if value[index + 1] == "x" and len(hex_digits) == 2 and set(hex_digits) <= _HEX:
                out.append(int(hex_digits, 16))
                index += 4
                continue
            index += 1
        out += value[index].encode()
        index += 1
    return out.decode("utf-8", errors="replace")


def _rdns(parts: list[str], *, escaped: bool) -> list[list[tuple[str, str]]] | None:
    """Each RDN as (type, RFC 4514 value) pairs; None if it is no list of ``type=value``."""
    rdns = []
    for part in _rejoined(parts, ",", escaped=escaped) or [""]:
        pairs = []
        for ava in _rejoined(_split_unescaped(part, "+"), "+", escaped=escaped) or [""]:
            kind, equals, value = ava.partition("=")
            if not equals or not value.strip():
                return None
            pairs.append((kind.strip(), _rfc4514_value(value, escaped=escaped)))
        rdns.append(pairs)
    return rdns


def _rfc4514(rdns_in_certificate_order: list[list[tuple[str, str]]]) -> str:
    return ",".join("+".join(f"{kind}={value}" for kind, value in rdn) for rdn in reversed(rdns_in_certificate_order))


def _generality(rdn: list[tuple[str, str]]) -> int | None:
    return _GENERALITY.get(rdn[0][0].upper())


def _most_general_first(rdns: list[list[tuple[str, str]]]) -> bool:
    first, last = _generality(rdns[0]), _generality(rdns[-1])
    return len(rdns) >= 2 and first is not None and last is not None and first < last


def openssl_form(text: str) -> tuple[str, str] | None:
    """If ``text`` is a DN in one of OpenSSL's printed forms rather than RFC 4514: the name of
    the form and the RFC 4514 string of the same DN (one that parses); else None."""
    found = _openssl_form(text)
    if found is None:
        return None
    try:
        DistinguishedName.parse(found[1])
    except InvalidDistinguishedName:
        return None  # not a DN after all: the parser's own message says what is wrong
    return found


def _openssl_form(text: str) -> tuple[str, str] | None:
    """The forms:

    - the slash form, ``/C=US/O=Example/CN=svc``: always (no RFC 4514 string starts with '/');
    - the one-line form, ``C = US, O = Example, CN = svc`` (or ``C=US, O=Example, CN=svc``):
      spaces after the commas or around '=', and the most general RDN first. With spaces alone
      (``CN = svc, O = Example``) it is a lenient RFC 4514 string in the right order, and left
      alone;
    - either, or an RFC 4514 string, after the label openssl prints (``subject=``).
    """
    stripped = text.strip()
    lowered = stripped.lower()
    prefix = next((p for p in _OUTPUT_PREFIXES if lowered.startswith(p)), None)
    if prefix is not None:  # pasted with the label openssl prints before it
        stripped = stripped[len(prefix):].strip()
    if stripped.startswith("/"):
        rdns = _rdns(_split_unescaped(stripped[1:], "/"), escaped=False)
        return ("slash", _rfc4514(rdns)) if rdns else None
    parts = _split_unescaped(stripped, ",")
    rdns = _rdns(parts, escaped=True)
    if rdns is None:
        return None
    # OpenSSL separates RDNs with ", ", and by default puts spaces around '=' too.
    printed = prefix is not None or any(part.startswith(" ") for part in parts[1:]) or any(map(_spaced, parts))
    if printed and _most_general_first(rdns):
        return "one-line", _rfc4514(rdns)
    if prefix is not None:  # RFC 4514 after the label (-nameopt RFC2253): the label alone is wrong
        return "labelled", stripped
    return None


def _spaced(rdn: str) -> bool:
    """Whether an attribute of the RDN has a space before or after its '='."""
    for ava in _split_unescaped(rdn, "+"):
        kind, _, value = ava.strip().partition("=")
        if kind != kind.rstrip() or value != value.lstrip():
            return True
    return False


def most_general_first(text: str) -> str | None:
    """For an RFC 4514 string that lists the most general RDN first (``C=US,O=Example,CN=svc``):
    the same RDNs in the reverse order, which is how such a certificate subject is written in
    RFC 4514; else None. Legal, and right for a certificate whose subject is in that order,
    but more often a DN copied the wrong way round: a warning, not a refusal."""
    rdns = _rdns(_split_unescaped(text.strip(), ","), escaped=True)
    if rdns is None or not _most_general_first(rdns):
        return None
    return ",".join("+".join(f"{kind}={value}" for kind, value in rdn) for rdn in reversed(rdns))
