from authz.clipping import clipped


def test_short_values_and_none_are_kept() -> None:
    assert clipped(None, 5) is None
    assert clipped("", 5) == ""
    assert clipped("abcde", 5) == "abcde"


def test_long_values_are_cut_visibly() -> None:
    assert clipped("abcdefg", 5) == "abcde...[2 more characters]"
    assert len(clipped("x" * 16_000, 255) or "") < 300
