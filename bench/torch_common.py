"""What the PyTorch reference scripts in bench/ share: failing with exit status 2 when PyTorch
or the device is missing, so that tools/device-check.sh reports them skipped, not failed."""
import os
import sys


def fail(msg):
    print(f"{os.path.basename(sys.argv[0])}: {msg}", file=sys.stderr)
    sys.exit(2)


def import_torch(device):
    """torch, with torch.nn.attention.sdpa_kernel (2.3 or later) and, for device "cuda", a
    visible CUDA device; exits with status 2 otherwise."""
    try:
        import torch
    except ImportError:
        fail("PyTorch is not installed in this Python (import torch failed)")
    try:
        from torch.nn.attention import SDPBackend, sdpa_kernel  # noqa: F401
    except ImportError:
        fail(f"torch {torch.__version__} has no torch.nn.attention.sdpa_kernel (needs 2.3 or later)")
    if device == "cuda" and not torch.cuda.is_available():
        fail(f"no CUDA device (torch {torch.__version__}, built for CUDA {torch.version.cuda})")
    return torch
