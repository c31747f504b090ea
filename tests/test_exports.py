import opslib


def test_all_is_sorted_and_unique():
    assert opslib.__all__ == sorted(set(opslib.__all__))


def test_every_exported_name_exists():
    missing = [name for name in opslib.__all__ if not hasattr(opslib, name)]
    assert missing == []


def test_public_callables_have_docstrings():
    undocumented = [
        name
        for name in opslib.__all__
        if callable(getattr(opslib, name))
        and not (getattr(opslib, name).__doc__ or "").strip()
    ]
    assert undocumented == []
