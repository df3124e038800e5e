"""``python -m byoc`` is the same as the ``comfystream-byoc`` console script."""

from byoc.cli import main

if __name__ == "__main__":
    raise SystemExit(main())
