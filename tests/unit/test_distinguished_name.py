import pytest
from cryptography import x509
from cryptography.x509.oid import NameOID

from authz.certificates.distinguished_name import DistinguishedName, InvalidDistinguishedName, prepare

CERT_NAME = x509.Name([
    x509.NameAttribute(NameOID.COUNTRY_NAME, "DE"),
    x509.NameAttribute(NameOID.ORGANIZATION_NAME, "Example Corp"),
    x509.NameAttribute(NameOID.COMMON_NAME, "client one"),
])


def matches(text: str) -> bool:
    return DistinguishedName.parse(text).matches(DistinguishedName.from_name(CERT_NAME))


@pytest.mark.parametrize("text", [
    "CN=client one,O=Example Corp,C=DE",
    "cn=client one,o=Example Corp,c=DE",
    "CN=CLIENT ONE,O=example corp,C=de",
    "CN=  client   one ,  O = Example Corp , C=DE",
    "2.5.4.3=client one,OID.2.5.4.10=Example Corp,C=DE",
    r"CN=client\20one,O=Example\ Corp,C=DE",
    "CN=#0c0a636c69656e74206f6e65,O=Example Corp,C=DE",
    "CN=client one;O=Example Corp;C=DE",
])
def test_equivalent_spellings_match(text: str) -> None:
    assert matches(text)


@pytest.mark.parametrize("text", [
    "C=DE,O=Example Corp,CN=client one",  # RDN order is significant
    "CN=client two,O=Example Corp,C=DE",
    "CN=client one,O=Example Corp",
    "CN=client one,OU=x,O=Example Corp,C=DE",
    "CN=clientone,O=Example Corp,C=DE",  # inner space is significant
])
def test_different_names_do_not_match(text: str) -> None:
    assert not matches(text)


def test_multi_valued_rdn_is_a_set() -> None:
    name = x509.Name([x509.RelativeDistinguishedName([
        x509.NameAttribute(NameOID.COMMON_NAME, "a"), x509.NameAttribute(NameOID.USER_ID, "b")])])
    cert_dn = DistinguishedName.from_name(name)
    assert DistinguishedName.parse("UID=b+CN=a").matches(cert_dn)
    assert DistinguishedName.parse("CN=a+UID=b").matches(cert_dn)
    assert not DistinguishedName.parse("CN=a,UID=b").matches(cert_dn)


def test_escaped_special_characters() -> None:
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, 'a,b+c"d\\e')])
    assert DistinguishedName.parse(r'CN=a\,b\+c\"d\\e').matches(DistinguishedName.from_name(name))
    assert DistinguishedName.parse(r"CN=a\2cb\2bc\22d\5ce").matches(DistinguishedName.from_name(name))


def test_utf8_escapes_and_compatibility_forms() -> None:
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "J\u00fcrgen \ufb01sh")])
    assert DistinguishedName.parse(r"CN=J\C3\BCrgen fish").matches(DistinguishedName.from_name(name))


def test_prepare_follows_rfc4518() -> None:
    assert prepare("  Hello\u00a0\tWorld  ") == "hello world"
    assert prepare("soft\u00adhyphen") == "softhyphen"
    assert prepare("\uff21\uff22\uff23") == "abc"  # fullwidth ABC


@pytest.mark.parametrize("text", ["", "   ", "CN", "CN=", "foo=bar", "CN=a,,O=b", "CN=a\\", 'CN="quoted"',
                                  "CN=a+CN=b", "CN=\\zz", "CN=#0c", "1.2=x,01.2.3=y", "CN=\\ff"])
def test_malformed_strings_are_refused_with_a_position(text: str) -> None:
    with pytest.raises(InvalidDistinguishedName):
        DistinguishedName.parse(text)


# Found by tests/fuzz/test_distinguished_name.py: each raised IndexError or UnicodeEncodeError,
# or was accepted as an attribute type no certificate can carry.
@pytest.mark.parametrize("text", ["OID.=x", "oid. =x", "CN=\ud800", "CN=a,O=\udfff", "\u00b2.1=x", "\u0661.\u0662=x",
                                  "OID.3.1=x", "1.40=x", "2.5.4.3." + "9" * 40 + "=x"])
def test_odd_attribute_types_and_lone_surrogates_are_refused(text: str) -> None:
    with pytest.raises(InvalidDistinguishedName, match="position"):
        DistinguishedName.parse(text)


def test_compatibility_forms_fold_like_their_decomposition() -> None:
    # "\u210c" (black-letter H) is "H" after NFKC; folded only before NFKC it stayed "H", not "h".
    for compatibility, plain in [("\u210c", "h"), ("\u2107", "\u025b"), ("\u1d2c", "a"), ("\u03d2", "\u03c5")]:
        assert DistinguishedName.parse(f"CN={compatibility}").matches(DistinguishedName.parse(f"CN={plain}"))
        assert prepare(prepare(compatibility)) == prepare(compatibility)
