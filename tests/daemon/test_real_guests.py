"""Placeholder replaced below."""
import pytest


def test_placeholder():
    pytest.skip("real-guest tests being written")
