"""Hugging Face Space entry point: build the Spectral Bias Lab and serve it on 0.0.0.0:7860 (demo/app.py does it)."""

from __future__ import annotations

try:  # ZeroGPU wants `spaces` imported before anything touches CUDA; optional elsewhere
    import spaces  # noqa: F401
except ImportError:  # pragma: no cover - depends on the environment
    pass

from demo.app import QUEUE_SIZE, main, make_app

__all__ = ["QUEUE_SIZE", "main", "make_app"]

if __name__ == "__main__":
    raise SystemExit(main())
