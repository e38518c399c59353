"""Shared by the Pub/Sub client scenarios."""


def expect(error, call):
    """Fails unless `call()` raises `error`."""
    try:
        call()
    except error:
        return
    raise AssertionError(f"expected {error.__name__}")
