"""``python -m distill_gui`` (and ``accelerate launch -m distill_gui train ...``)."""

from distill_gui.launcher import main

if __name__ == "__main__":
    raise SystemExit(main())
