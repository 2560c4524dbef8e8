import base64

from hypothesis import given, settings
from hypothesis import strategies as st

from cms import urlsafe


@settings(max_examples=300, deadline=None)
@given(st.binary(max_size=80))
def test_base64url_without_padding_and_back(data: bytes) -> None:
    text = urlsafe.encode(data)
    assert text == base64.urlsafe_b64encode(data).decode().rstrip("=")
    assert "=" not in text
    assert urlsafe.decode(text) == data
