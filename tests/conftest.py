import os
import sys
from pathlib import Path

import pytest
import torch

sys.path.insert(0, str(Path(__file__).parent))  # `import reference` from tests

torch.set_num_threads(min(2, os.cpu_count() or 1))


def pytest_collection_modifyitems(config, items):
    has_cuda = torch.cuda.is_available()
    try:
        import tensorrt  # noqa: F401
        has_trt = has_cuda
    except ImportError:
        has_trt = False
    for item in items:
        if "gpu" in item.keywords and not has_cuda:
            item.add_marker(pytest.mark.skip(reason="needs a CUDA device; none is visible to torch"))
        if "trt" in item.keywords and not has_trt:
            item.add_marker(pytest.mark.skip(reason="needs TensorRT and CUDA (pip install tensorrt-cu13 on a GPU machine)"))
