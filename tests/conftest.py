"""Suite-wide settings."""

import pytest
import torch


@pytest.fixture(autouse=True)
def one_torch_thread():
    """One torch thread per test: results do not depend on the core count, and tests on
    a shared 2-core machine do not contend with each other's thread pools."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


@pytest.fixture(autouse=True, scope="session")
def private_model_and_cache_folders(tmp_path_factory):
    """Tests never read or write the user's model store or evaluation cache: a developer's
    trained models must not make a test pass that fails on a fresh machine."""
    import os

    saved = {name: os.environ.get(name) for name in ("ANONCLI_MODELS", "ANONCLI_CACHE")}
    os.environ["ANONCLI_MODELS"] = str(tmp_path_factory.mktemp("models"))
    os.environ["ANONCLI_CACHE"] = str(tmp_path_factory.mktemp("cache"))
    yield
    for name, value in saved.items():
        if value is None:
            os.environ.pop(name, None)
        else:
            os.environ[name] = value
