"""The RFC 4514 DN parser (``DistinguishedName.parse``): a registered value, read from the CLI
or a stored record, and compared with the subjects of real certificates.

Properties: any text is a DN or ``InvalidDistinguishedName`` (nothing else); a DN written by an
independent RFC 4514 writer parses to exactly its parts; what cryptography writes for a
certificate's subject parses to the DN that certificate is compared as; the comparison ignores
what RFC 4518 says it ignores; and parsing is linear."""

from __future__ import annotations

import datetime
import unicodedata
from dataclasses import dataclass
from random import Random

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID, ObjectIdentifier
from hypothesis import assume, given
from hypothesis import strategies as st

from authz.certificates.distinguished_name import (
    _ATTRIBUTE_TYPES,
    DistinguishedName,
    InvalidDistinguishedName,
    prepare,
)
from tests.fuzz.profiles import budget
from tests.fuzz.strategies import any_text, large, mutated, text_of

# --- an RFC 4514 writer of our own, with every freedom the grammar allows -----------------

_MUST_ESCAPE = set('\\"+,;<>')
_NAMES_BY_OID: dict[str, list[str]] = {}
for _name, _oid in _ATTRIBUTE_TYPES.items():
    _NAMES_BY_OID.setdefault(_oid.dotted_string, []).append(_name)
_OIDS = sorted(_NAMES_BY_OID)


def _escaped(value: str, rnd: Random) -> str:
    """``value`` as an RFC 4514 attribute value: specials escaped (as ``\\c`` or ``\\hh``), any
    other character sometimes hex-escaped as its UTF-8 bytes, in either case of hex digit."""
    out = []
    for index, ch in enumerate(value):
        special = ch in _MUST_ESCAPE or ch == "\x00" or (ch == "#" and index == 0) \
            or (ch == " " and index in (0, len(value) - 1))
        if ch == "\x00" or rnd.random() < 0.2:
            out.append("".join(f"\\{b:02{rnd.choice('xX')}}" for b in ch.encode()))
        elif special:
            out.append("\\" + ch)
        else:
            out.append(ch)
    return "".join(out)


def _spelling(oid: str, rnd: Random) -> str:
    """One of the ways to write an attribute type: a name in any case, its OID, OID.<oid>."""
    choice = rnd.randrange(4)
    if choice == 0:
        return oid
    if choice == 1:
        return rnd.choice(["OID.", "oid.", "Oid."]) + oid
    return "".join(c.upper() if rnd.random() < 0.5 else c.lower() for c in rnd.choice(_NAMES_BY_OID[oid]))


_BER_STRING_TAGS = {0x0C: "utf-8", 0x13: "ascii", 0x16: "ascii", 0x14: "latin-1", 0x1E: "utf-16-be", 0x1C: "utf-32-be"}
_BER_TEXT = {
    "ascii": st.text(st.characters(min_codepoint=0x20, max_codepoint=0x7E), min_size=1, max_size=20),
    "latin-1": st.text(st.characters(max_codepoint=0xFF), min_size=1, max_size=20),
    "utf-16-be": st.text(st.characters(max_codepoint=0xFFFF, exclude_categories=("Cs",)), min_size=1, max_size=20),
    "utf-8": st.text(st.characters(exclude_categories=("Cs",)), min_size=1, max_size=20),
    "utf-32-be": st.text(st.characters(exclude_categories=("Cs",)), min_size=1, max_size=20),
}

# Characters whose case mapping and compatibility decomposition interact (ligatures, titlecase,
# Kelvin and Ohm signs, modifier and black-letter forms, Greek final sigma, fullwidth forms),
# drawn often: hypothesis alone would rarely pick them.
_CASE_AND_COMPATIBILITY = st.sampled_from(list(
    "\u00df\u1e9e\u0130\u0131\ufb01\ufb00\u01c5\u01c8\u212a\u212b\u2126\u210c\u2111\u1d2c\u1d2d\u0345\u037a"
    "\u03c2\u03f2\u03d2\u03d3\u2168\u2178\uff46\uff21\u2460\u338f\uff8a\uff9e\u0301"))
# Values with something left once RFC 4518 has prepared them: the parser refuses blank ones.
values = text_of(st.characters(exclude_categories=("Cs",)) | _CASE_AND_COMPATIBILITY, min_size=1, max_size=30).filter(
    lambda v: prepare(v) != "")


@dataclass(frozen=True)
class Attribute:
    oid: str
    text: str  # as written
    expected: str | bytes  # as compared


@st.composite
def _attribute(draw: st.DrawFn, oid: str, rnd: Random) -> Attribute:
    before, after = rnd.choice(["", " ", "  "]), rnd.choice(["", " "])
    if rnd.random() < 0.2:  # a #hex BER value
        tag = rnd.choice([*_BER_STRING_TAGS, 0x04])
        if tag == 0x04:  # OCTET STRING: compared as its raw content
            content = draw(st.binary(max_size=40))
            expected: str | bytes = content
        else:
            text = draw(_BER_TEXT[_BER_STRING_TAGS[tag]])
            content = text.encode(_BER_STRING_TAGS[tag])[:0x7F]  # short-form length
            expected = prepare(content.decode(_BER_STRING_TAGS[tag], errors="ignore"))
            assume(content.decode(_BER_STRING_TAGS[tag], errors="ignore").encode(_BER_STRING_TAGS[tag]) == content)
        digits = bytes([tag, len(content)]).hex() + content.hex()
        written = "#" + (digits.upper() if rnd.random() < 0.5 else digits)
    else:
        value = draw(values)
        written, expected = _escaped(value, rnd), prepare(value)
    return Attribute(oid, f"{before}{_spelling(oid, rnd)}{after}={written}", expected)


@st.composite
def dns(draw: st.DrawFn) -> tuple[str, DistinguishedName]:
    """An RFC 4514 string and the DN it denotes (most specific RDN first in the string)."""
    rnd = draw(st.randoms(use_true_random=False))  # the writer's choices: cheaper than a draw each
    rdns = []
    for _ in range(draw(st.integers(1, 5))):
        oids = draw(st.lists(st.sampled_from(_OIDS), min_size=1, max_size=3, unique=True))
        rdns.append([draw(_attribute(oid, rnd)) for oid in oids])
    text = "+".join(a.text for a in rdns[0])
    for rdn in rdns[1:]:
        text += rnd.choice([",", ";", ", "]) + "+".join(a.text for a in rdn)
    expected = DistinguishedName(tuple(frozenset((a.oid, a.expected) for a in rdn) for rdn in reversed(rdns)))
    return text, expected


def _parse_or_refuse(text: str) -> DistinguishedName | None:
    try:
        return DistinguishedName.parse(text)
    except InvalidDistinguishedName as exc:
        assert "position" in str(exc) or "empty" in str(exc) or "#hex" in str(exc), exc
        return None


# --- properties ------------------------------------------------------------------------------

_DN_ALPHABET = st.sampled_from([*'=,;+\\#"<> .0123456789abcdefABCDEF', "CN", "OID.", "2.5.4.3", "é", "\ud800", "\x00",
                                "\\c3", "\\ff", "\t", "\u3000"])
# Attribute types as a client of the grammar might get them wrong: empty, a bare "OID.",
# leading zeros, digits that are not ASCII, unknown names.
_TYPE_SLOTS = st.lists(st.sampled_from(["OID.", "oid.", "0", "1", "2", "25", ".", "01", "CN", "c", "x", " ", "\u00b2",
                                        "\u0663", "\uff11", "\ud800"]), max_size=5).map("".join)
_VALUE_SLOTS = any_text | st.lists(_DN_ALPHABET, max_size=8).map("".join)


@st.composite
def dn_shaped(draw: st.DrawFn) -> str:
    """The shape of a DN (type=value pairs, separators) with any type and value text."""
    pairs = draw(st.lists(st.tuples(_TYPE_SLOTS | st.sampled_from(["CN", "2.5.4.3"]), _VALUE_SLOTS), min_size=1,
                          max_size=4))
    text = ""
    for index, (attribute_type, value) in enumerate(pairs):
        separator = draw(st.sampled_from([",", ";", "+", ", "])) if index else ""
        text += f"{separator}{attribute_type}={value}"
    return text


@budget(400)
@given(any_text | st.lists(_DN_ALPHABET).map("".join) | dn_shaped()
       | mutated(dns().map(lambda pair: pair[0]), _DN_ALPHABET))
def test_any_text_is_a_dn_or_a_refusal(text: str) -> None:
    parsed = _parse_or_refuse(text)
    if parsed is not None:
        # Only attribute types a certificate can carry: a registered DN naming another can
        # never match, and its registration should have been refused.
        for rdn in parsed.rdns:
            for oid, _ in rdn:
                assert x509.ObjectIdentifier(oid).dotted_string == oid, text


@budget(300)
@given(dns())
def test_a_written_dn_parses_to_its_parts(dn: tuple[str, DistinguishedName]) -> None:
    text, expected = dn
    assert DistinguishedName.parse(text) == expected


# --- against certificates made by cryptography --------------------------------------------------

_KEY = ec.generate_private_key(ec.SECP256R1())
_NOW = datetime.datetime.now(datetime.UTC)
# cryptography encodes these as IA5String and PrintableString: other characters do not encode.
_IA5 = {NameOID.DOMAIN_COMPONENT, NameOID.EMAIL_ADDRESS}
_PRINTABLE_STRING = {NameOID.SERIAL_NUMBER, NameOID.DN_QUALIFIER}
_PRINTABLE_STRING_CHARS = st.sampled_from("ABCXYZabcxyz0189 '()+,-./:=?")
_COUNTRY = {NameOID.COUNTRY_NAME, NameOID.JURISDICTION_COUNTRY_NAME}
_CERT_OIDS = sorted({*_ATTRIBUTE_TYPES.values(), ObjectIdentifier("1.3.6.1.4.1.99999.1")},
                    key=lambda oid: oid.dotted_string)


@st.composite
def name_attributes(draw: st.DrawFn) -> x509.NameAttribute[str]:
    oid = draw(st.sampled_from(_CERT_OIDS))
    if oid in _COUNTRY:
        value = draw(st.text(st.characters(min_codepoint=0x41, max_codepoint=0x5A), min_size=2, max_size=2))
    elif oid in _PRINTABLE_STRING:
        value = draw(st.text(_PRINTABLE_STRING_CHARS, min_size=1, max_size=30))
    elif oid in _IA5:
        value = draw(st.text(st.characters(max_codepoint=0x7F), min_size=1, max_size=30))
    else:
        value = draw(st.text(st.characters(exclude_categories=("Cs",)), min_size=1, max_size=30))
    return x509.NameAttribute(oid, value)


names = st.lists(st.lists(name_attributes(), min_size=1, max_size=3).map(
    lambda attrs: x509.RelativeDistinguishedName(dict.fromkeys(attrs))), min_size=1, max_size=5).map(x509.Name)


def _certificate(subject: x509.Name) -> x509.Certificate:
    """A real certificate with ``subject``, as a server would load it (DER and back)."""
    cert = (x509.CertificateBuilder().subject_name(subject).issuer_name(subject).public_key(_KEY.public_key())
            .serial_number(1).not_valid_before(_NOW).not_valid_after(_NOW + datetime.timedelta(days=1))
            .sign(_KEY, hashes.SHA256()))
    return x509.load_der_x509_certificate(cert.public_bytes(serialization.Encoding.DER))


@budget(200, deadline_ms=1000)
@given(names)
def test_cryptography_rfc4514_string_of_a_certificate_subject_matches_it(name: x509.Name) -> None:
    subject = _certificate(name).subject
    compared = DistinguishedName.from_name(subject)
    assert compared == DistinguishedName.from_name(name)
    text = subject.rfc4514_string()
    blank = any(not a.value.strip() for a in subject)  # type: ignore[union-attr]
    repeated = any(len({a.oid for a in rdn}) != len(rdn) for rdn in subject.rdns)
    parsed = _parse_or_refuse(text)
    if blank or repeated:  # documented refusals: an empty value, an RDN repeating a type
        assert parsed is None, text
    else:
        assert parsed is not None, text
        assert parsed.matches(compared), text


@budget(300)
@given(values)
def test_case_compatibility_forms_and_spaces_do_not_matter(value: str) -> None:
    # RFC 4518 (caseIgnoreMatch): a value matches its own prepared form (preparing is
    # idempotent), its compatibility decomposition, itself with ASCII letters in the other case
    # and itself with insignificant spaces added. Not its str.upper() (U+0131, dotless i, upper
    # cases to "I", which folds to "i", another letter) nor its bare casefold() (U+0345 folds
    # to a base letter, iota, so folding before canonical reordering moves combining marks).
    dn = DistinguishedName.parse("CN=" + _escape(value))
    ascii_swapped = "".join(c.swapcase() if c.isascii() else c for c in value)
    for variant in (prepare(value), unicodedata.normalize("NFKD", value), ascii_swapped,
                    f"  {value}  ".replace(" ", "   ")):
        if prepare(variant):
            assert dn.matches(DistinguishedName.parse("CN=" + _escape(variant))), (value, variant)


def _escape(value: str) -> str:
    return "".join("\\" + c if c in _MUST_ESCAPE or c in "# " else f"\\{c.encode().hex()}" if c == "\x00" else c
                   for c in value)


# --- bounded time -----------------------------------------------------------------------------

_FRAGMENTS = st.sampled_from(["CN=a,", "CN=a+", "O=", "\\", "\\41", "a", " ", "#00", "+CN=", "2.5.4.3=x;",
                              "OID.1.2.3=\\c3\\a9,", "=", ",", "é"])


@budget(60, deadline_ms=1000)
@given(st.sampled_from(["", "CN=", "CN=a+O=", "OID.1.2.3=", "CN=#0c", "CN=\\"]),
       large(_FRAGMENTS | st.text(min_size=1, max_size=6), max_chars=64 * 1024))
def test_parsing_is_linear(start: str, repeated: str) -> None:
    # 64 KiB (four times what a client's whole form may hold), many short parts or one long
    # value: under 50 ms here; a path quadratic in the value's length takes seconds.
    _parse_or_refuse(start + repeated)

