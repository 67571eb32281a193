"""Suite-wide isolation: no test reads or writes the user's weight cache."""

import pytest


@pytest.fixture(autouse=True)
def isolated_weights_home(tmp_path_factory, monkeypatch):
    home = tmp_path_factory.mktemp("vidcolor-home")
    monkeypatch.setenv("VIDCOLOR_HOME", str(home))
    return home
