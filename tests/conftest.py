import os
import warnings

import numpy as np
import pytest

import fastq

# torch 2.13 warns on every quantized tensor creation (deprecation); tests use them on purpose.
warnings.filterwarnings("ignore", message=".*quantized tensor creation functions.*")
warnings.filterwarnings("ignore", category=DeprecationWarning, module="torch")


@pytest.fixture(params=fastq.backends())
def backend(request):
    """Runs a test once per ISA backend this CPU supports, restoring the default afterwards."""
    previous = fastq.get_backend()
    fastq.set_backend(request.param)
    yield request.param
    fastq.set_backend(previous)


@pytest.fixture
def rng(request):
    seed = int(os.environ.get("FASTQ_TEST_SEED", "0"))
    return np.random.default_rng([seed, abs(hash(request.node.name)) % 2**31])
