"""Fixtures shared by the minigrad tests."""
import pytest

from minigrad.ops import parallel


@pytest.fixture(params=[1, 2], ids=["1-thread", "2-threads"])
def threads(request):
    """Run the test with minigrad's row blocks on 1 and on 2 threads."""
    parallel.set_num_threads(request.param)
    yield request.param
    parallel.set_num_threads(None)
